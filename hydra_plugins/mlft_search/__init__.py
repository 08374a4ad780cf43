"""The Hydra side of mlft's Optuna search: Hydra loads sweepers only from the hydra_plugins package (the search
itself is mlft.search)."""
