"""Text: tokenizers for transcripts (sentencepiece units or characters)."""
