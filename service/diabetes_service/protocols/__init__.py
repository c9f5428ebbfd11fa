"""Protocol adapters: each turns one wire format into calls on the scoring core, and back."""
