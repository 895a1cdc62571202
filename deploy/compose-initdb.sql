-- MLflow's backend store, beside the alert store (compose.yaml).
CREATE DATABASE mlflow;
