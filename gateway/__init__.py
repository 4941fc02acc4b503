"""bms-gateway: the master BMS of a stack of LiFePO4 modules, between their CAN bus and the inverter."""

from gateway.errors import ConfigError, DecodeError, GatewayError

__all__ = ["ConfigError", "DecodeError", "GatewayError", "__version__"]
__version__ = "0.1.0"
