"""Static HTML reports people look at: data quality + split analysis, the tuning study, the model.

Every page is one self-contained file (plots inline, no network at view time):

    python -m reports.data_quality     # after `dbt build`
    python -m reports.split_analysis   # the split analysis alone, as text or --json
    python -m reports.tuning           # after `python -m training.tune`
    python -m reports.model            # after `python -m training.predict` and `dbt build`
    python -m reports                  # all pages; prints their paths
"""
