"""Simulated battery modules speaking the module CAN protocol, with fault injection, for demos and tests."""

from gateway.sim.faults import Fault, parse_fault
from gateway.sim.simulator import ModuleSnapshot, Simulator

__all__ = ["Fault", "ModuleSnapshot", "Simulator", "parse_fault"]
