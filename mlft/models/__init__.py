"""Loading encoders and tokenizers from the hub or a local folder."""
