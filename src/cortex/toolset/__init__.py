"""Task handlers: one module per master's tools. ``registry`` maps a task kind to its handler."""
