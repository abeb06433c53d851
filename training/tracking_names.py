"""The names training records in MLflow and Optuna, and the reports read back: one place for
each, importable without torch, MLflow or Optuna."""

# Metrics.
VAL_RMSE = "val_rmse"  # per epoch (Lightning): early stopping, checkpoints and pruning watch it
TEST_RMSE = "test_rmse"  # the champion's, on the test split (its run and the study's parent run)
BEST_VAL_RMSE = "best_val_rmse"  # a run's best val_rmse; a trial's objective
NOISE_FLOOR_RMSE = "noise_floor_rmse"  # the raw data's noise floor, on the parent run

# Tags of the study's parent run, set when the best trial is crowned (training.champion).
MODEL_NAME_TAG = "model.name"
MODEL_VERSION_TAG = "model.version"
BEST_TRIAL_TAG = "best_trial"

# Optuna user attributes that link a study to MLflow.
PARENT_RUN_ATTR = "mlflow_parent_run_id"  # study: its MLflow parent run
TRIAL_RUN_ATTR = "mlflow_run_id"  # trial: its MLflow child run
