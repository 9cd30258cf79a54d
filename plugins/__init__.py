"""Built-in optimizer and schedule plugins.

They are registered through the optbench entry-point group, exactly like third-party plugins.
"""
