"""decaywatch: a real-time monitor for ML models that decay in production."""
