"""An example optbench plugin package; the plugin itself is :mod:`optbench_example.plugin`."""
