"""One subpackage per paper/method: LightningModule(s), losses and method-only parts."""
