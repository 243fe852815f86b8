"""Framework callbacks over `grokscope.Monitor`: `integrations.lightning` (PyTorch Lightning) and
`integrations.hf` (Hugging Face `Trainer`). Each is imported on its own, so neither framework is required."""
