"""Built-in optimizer and schedule plugins, registered through the optbench entry-point group like any third-party plugin."""
