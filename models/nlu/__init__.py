"""Joint intent and slot model: WordPiece tokenizer, MASSIVE data, training (torch), inference."""
