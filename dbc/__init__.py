"""The shipped DBC files: the module protocol and the inverter side."""
