"""Declaring ``depth_node``'s parameters (``params.SPECS``) on an rclpy node and checking updates."""
from __future__ import annotations

import sys
from typing import Any, Dict, Optional, Sequence, Tuple

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.parameter import Parameter

from depth_ros.node import params as P


class StartupError(RuntimeError):
    """The node cannot start (bad parameters, missing/corrupt weights); the message says why."""


def descriptor(spec: P.ParamSpec) -> ParameterDescriptor:
    d = ParameterDescriptor(description=spec.description, read_only=spec.read_only,
                            additional_constraints=spec.constraints_text())
    if spec.type is float and (spec.min is not None or spec.max is not None):
        d.floating_point_range = [FloatingPointRange(
            from_value=float(spec.min if spec.min is not None else -sys.float_info.max),
            to_value=float(spec.max if spec.max is not None else sys.float_info.max), step=0.0)]
    elif spec.type is int and (spec.min is not None or spec.max is not None):
        d.integer_range = [IntegerRange(from_value=int(spec.min if spec.min is not None else -2 ** 63),
                                        to_value=int(spec.max if spec.max is not None else 2 ** 63 - 1), step=1)]
    return d


def declare(node) -> Dict[str, Any]:
    """Declare every parameter (and the pass-through ones given at start); return the values.

    Raises ``StartupError`` for a wrong type / out-of-range value or an invalid combination.
    """
    overrides: Dict[str, Parameter] = getattr(node, "_parameter_overrides", {}) or {}
    for name, spec in P.SPECS.items():
        ov = overrides.get(name)
        # "-p min_range:=1" arrives as an integer; accept it for a double parameter.
        if ov is not None and spec.type is float and ov.type_ == Parameter.Type.INTEGER:
            overrides[name] = Parameter(name, Parameter.Type.DOUBLE, float(ov.value))
        try:
            node.declare_parameter(name, spec.default, descriptor(spec))
        except Exception as exc:  # wrong type / out of range in a params file or -p
            given = overrides.get(name)
            shown = given.value if given is not None else spec.default
            raise StartupError(f"parameter {name}={shown!r}: {type(exc).__name__}: {exc}") from None
    passthrough = []
    for name, ov in list(overrides.items()):
        if P.is_passthrough(name):
            passthrough.append(name)
            node.declare_parameter(name, ov.value, ParameterDescriptor(
                description="passed to the model constructor", read_only=True, dynamic_typing=True))
        elif name not in P.SPECS and name != "use_sim_time" and not name.startswith(
                ("qos_overrides.", "start_type_description_service")):
            node.get_logger().warning(f"ignoring unknown parameter '{name}' (typo?)")
    values = {name: node.get_parameter(name).value for name in P.SPECS}
    for name in passthrough:
        values[name] = node.get_parameter(name).value
    problems = P.validate_all(values)
    if problems:
        raise StartupError("invalid parameters: " + "; ".join(problems))
    return values


def updated(values: Dict[str, Any], parameters: Sequence[Parameter]) -> Tuple[Optional[Dict[str, Any]], str]:
    """(new values, "") when ``parameters`` may be applied at runtime, else (None, reason)."""
    new = dict(values)
    for p in parameters:
        if P.is_passthrough(p.name):
            return None, f"{p.name} is read-only (restart the node)"
        spec = P.SPECS.get(p.name)
        if spec is None:  # use_sim_time etc.: not ours
            continue
        if spec.read_only:
            return None, f"{p.name} is read-only (restart the node)"
        value = p.value
        if spec.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        reason = spec.validate(value)
        if reason:
            return None, reason
        new[p.name] = value
    problems = P.validate_all(new)
    if problems:
        return None, "; ".join(problems)
    return new, ""
