{#- The standard normal distribution, for the book's split check
    (tests/generic/splits_are_representative.sql). Written for every engine at once: the
    thresholds are Jinja numbers, known when the SQL is compiled, and the p-value is SQL that
    uses only arithmetic, `abs`, `floor` and `case` (the functions tests/athena checks exist on
    Trino; it lists no `exp` or `ln`). -#}

{#- Euler's number as a double: `e ** x` is exp(x) in Jinja (which has no math module). -#}
{% macro euler() -%}
    {{- return(2.718281828459045) -}}
{%- endmacro %}

{#- A number as a SQL double literal. With an exponent, so that Trino reads it as a DOUBLE:
    a plain decimal is a DECIMAL there, and a product of a few of them overflows its scale. -#}
{% macro double_literal(value) -%}
    {%- set text = value | float | string -%}
    {{- return(text if 'e' in text else text ~ 'e0') -}}
{%- endmacro %}

{#- A polynomial in x, coefficients from the highest power down (Horner's rule). -#}
{% macro jinja_polynomial(coefficients, x) -%}
    {%- set value = namespace(total=0.0) -%}
    {%- for coefficient in coefficients -%}
        {%- set value.total = value.total * x + coefficient -%}
    {%- endfor -%}
    {{- return(value.total) -}}
{%- endmacro %}

{#- ln(x) for x > 0 in Jinja: (x^h - 1) / h for a small h, then Halley steps on e^y = x (each
    one triples the correct digits), so it is exact to the last bits of a double. -#}
{% macro jinja_ln(x) -%}
    {%- set y = namespace(value=(x ** 1e-6 - 1) / 1e-6) -%}
    {%- for _ in range(3) -%}
        {%- set power = euler() ** y.value -%}
        {%- set y.value = y.value + 2 * (x - power) / (x + power) -%}
    {%- endfor -%}
    {{- return(y.value) -}}
{%- endmacro %}

{#- z such that P(Z > z) = p, for 0 < p <= 0.5, as a Jinja number: P. J. Acklam's rational
    approximation of the normal quantile, relative error below 1.15e-9 (its published bound;
    it agrees with scipy's norm.isf to 1e-8 at every threshold the split check can use,
    tests/pipeline/test_split_check.py). -#}
{% macro normal_upper_quantile(p) -%}
    {%- if not (0 < p <= 0.5) -%}
        {{ exceptions.raise_compiler_error(
            "normal_upper_quantile needs a tail probability in (0, 0.5], got " ~ p
        ) }}
    {%- endif -%}
    {%- if p < 0.02425 -%}
        {#- The tail: a rational function of q = sqrt(-2 ln p). -#}
        {%- set q = (-2 * jinja_ln(p)) ** 0.5 -%}
        {%- set numerator = jinja_polynomial([
            -7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
            -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00,
        ], q) -%}
        {%- set denominator = jinja_polynomial([
            7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
            3.754408661907416e+00, 1.0,
        ], q) -%}
        {{- return(-numerator / denominator) -}}
    {%- endif -%}
    {#- The centre: q times a rational function of q^2, q = 0.5 - p. -#}
    {%- set q = 0.5 - p -%}
    {%- set numerator = jinja_polynomial([
        -3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
        1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00,
    ], q * q) -%}
    {%- set denominator = jinja_polynomial([
        -5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
        6.680131188771972e+01, -1.328068155288572e+01, 1.0,
    ], q * q) -%}
    {{- return(numerator * q / denominator) -}}
{%- endmacro %}

{#- Bonferroni's threshold for `comparisons` two-sided z-tests at family-wise error `alpha`:
    flag a pair when |z| exceeds the 1 - alpha / (2 m) normal quantile (p < alpha / m). Then a
    correct random split is flagged with probability at most alpha, however many pairs are
    compared and however they correlate. m = 18, alpha = 0.05: 2.9913. -#}
{% macro bonferroni_z_threshold(alpha, comparisons) -%}
    {{- return(normal_upper_quantile(alpha / (2 * comparisons))) -}}
{%- endmacro %}

{#- e^(-a) in SQL without `exp`, for 0 <= a < 1024: e^(-floor(a)) is the product of e^(-2^k)
    over the binary digits k of floor(a) (constants computed here), and e^(-f) of the fraction
    f = a - floor(a) is its Taylor series to f^15. Relative error below 1e-13. `a` is repeated:
    keep it short. -#}
{% macro exp_of_negative(a) -%}
    {%- set fraction = '(' ~ a ~ ' - floor(' ~ a ~ '))' -%}
    (
    {%- for k in range(10) %}
        {%- set bit = 'floor(' ~ a ~ ' / ' ~ 2 ** k ~ ') % 2 = 1' %}
        case when {{ bit }} then {{ double_literal(euler() ** -(2 ** k)) }} else 1 end *
    {%- endfor %}
        {% for n in range(1, 16) %}(1 - {{ fraction }} / {{ n }} * {% endfor -%}
        1{% for n in range(1, 16) %}){% endfor %}
    )
{%- endmacro %}

{#- The two-sided p-value of a z-score, P(|Z| > |z|), in SQL on every engine:
    2 e^(-z^2/2) R(|z|), where R is the rational function of W. J. Cody / J. F. Hart (1968)
    in G. West's "Better approximations to cumulative normal functions" (2005) below
    |z| = 7.07 and a short continued fraction above; relative error below 1e-8 (checked
    against scipy, tests/pipeline/test_split_check.py). 0 from |z| = 37 on (p < 1e-298). -#}
{% macro normal_two_sided_p_value(z) -%}
    {%- set x = 'abs(' ~ z ~ ')' -%}
    case
        when {{ x }} >= 37 then 0
        else 2 * {{ exp_of_negative(x ~ ' * ' ~ x ~ ' / 2') }} * case
            when {{ x }} < 7.07106781186547 then
                ((((((0.0352624965998911 * {{ x }} + 0.700383064443688) * {{ x }}
                + 6.37396220353165) * {{ x }} + 33.912866078383) * {{ x }}
                + 112.079291497871) * {{ x }} + 221.213596169931) * {{ x }}
                + 220.206867912376)
                / (((((((0.0883883476483184 * {{ x }} + 1.75566716318264) * {{ x }}
                + 16.064177579207) * {{ x }} + 86.7807322029461) * {{ x }}
                + 296.564248779674) * {{ x }} + 637.333633378831) * {{ x }}
                + 793.826512519948) * {{ x }} + 440.413735824752)
            else 1 / (2.506628274631 * ({{ x }} + 1 / ({{ x }} + 2 / ({{ x }} + 3 / ({{ x }}
                + 4 / ({{ x }} + 0.65))))))
        end
    end
{%- endmacro %}
