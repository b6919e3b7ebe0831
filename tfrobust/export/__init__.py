"""SavedModel export for TF Serving, with metadata.json."""

from tfrobust.export.saved_model import (
    SIGNATURES,
    export_saved_model,
    latest_version,
    load_metadata,
    validate_metadata,
    write_models_config,
)

__all__ = ["SIGNATURES", "export_saved_model", "latest_version", "load_metadata", "validate_metadata",
           "write_models_config"]
