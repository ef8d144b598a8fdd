"""The weight-pruning engine: targets, masks, mask selection and one-shot orchestration."""
