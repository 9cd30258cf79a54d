"""Built-in problem plugins, registered through the optbench entry-point group like any third-party plugin."""
