-- Run once by the postgres image on its first start (compose.yaml): one database per user of
-- the cluster; `optuna` is POSTGRES_DB.
create database mlflow;
create database lake;
