"""spangpt: a character-level GPT that learns world knowledge from span-corruption pretraining."""

__version__ = "0.1.0"
