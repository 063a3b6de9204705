"""Side-by-side comparison of legacy CSD answers and the bridge's answers (its own issue)."""
