"""Launch files, parameter files and the RViz config agree with setup.py and the node (no ROS needed).

launch_ros cannot be installed here, so the launch files are checked statically (AST) and executed
against minimal stand-ins (``ros_utils.run_launch_file``); test_node_process.py then runs the command
line that launch_ros would build.
"""
import ast
import fnmatch
import importlib
from pathlib import Path

import pytest
import ros_utils as ru
import yaml

from depth_ros.node import params as P
from depth_ros.pipeline import outputs as O

REPO = ru.REPO
LAUNCH_FILES = sorted((REPO / "launch").glob("*.launch.py"))
REQUIRED_ARGS = {"image", "camera_info", "namespace", "params_file", "weights", "device", "rviz"}
# the model each launch file is for (its parameter file's `model`)
LAUNCH_MODEL = {"zoedepth.launch.py": "zoedepth_nk", "depthpro.launch.py": "depth_pro", "marigold.launch.py": "marigold"}
CONFIG_MODEL = {"zoedepth_nk.yaml": "zoedepth_nk", "depth_pro.yaml": "depth_pro", "marigold.yaml": "marigold"}
# node topic names, kept in sync with depth_ros/node/node.py (checked in test_node_topic_constants)
INPUTS = {O.IMAGE_TOPIC, O.IMAGE_TOPIC + O.COMPRESSED_SUFFIX, O.CAMERA_INFO_TOPIC}
OUTPUTS = set(O.OUTPUT_TOPICS)


def _setup_info():
    tree = ast.parse((REPO / "setup.py").read_text())
    data_globs, scripts, name = [], {}, None
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "package_name"
                                                for t in node.targets):
            name = ast.literal_eval(node.value)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "glob":
            data_globs.append(ast.literal_eval(node.args[0]))
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            for entry in ast.literal_eval(node.value)["console_scripts"]:
                k, v = (x.strip() for x in entry.split("="))
                scripts[k] = v
    return name, data_globs, scripts


def _constants(tree):
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return out


def _launch_sources(path):
    """``(tree, trees, consts)``: the launch file's AST, it plus the ASTs of the depth_ros modules it
    imports from (depth_ros/launch_common.py: the code both launch files share), and the module-level
    constants of all of them (the launch file's own win)."""
    tree = ast.parse(path.read_text())
    trees = [tree]
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "depth_ros":
            mod = REPO.joinpath(*node.module.split(".")).with_suffix(".py")
            # inside the depth_ros package, so setup.py (find_packages) installs it with the node
            assert mod.is_file() and mod.parent == REPO / "depth_ros", mod
            module = importlib.import_module(node.module)  # importable without launch / launch_ros
            for alias in node.names:
                assert hasattr(module, alias.name), (node.module, alias.name)
            trees.append(ast.parse(mod.read_text()))
    consts = {}
    for t in reversed(trees):
        consts.update(_constants(t))
    return tree, trees, consts


def _calls(tree, name):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and (getattr(n.func, "id", None) == name or getattr(n.func, "attr", None) == name)]


def _value(node, consts):
    if isinstance(node, ast.Name):
        return consts.get(node.id)
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def test_every_launch_file_is_known():
    assert {p.name for p in LAUNCH_FILES} == set(LAUNCH_MODEL)


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_static(path):
    tree, trees, consts = _launch_sources(path)
    pkg, globs, scripts = _setup_info()
    assert any(fnmatch.fnmatch(f"launch/{path.name}", g) for g in globs), "launch file not installed by setup.py"
    # each launch file names its own parameter file
    assert "PARAMS_FILE" in _constants(tree), "PARAMS_FILE must be set in the launch file itself"

    def calls(name):
        return [c for t in trees for c in _calls(t, name)]

    nodes = [{kw.arg: kw.value for kw in c.keywords} for c in calls("Node")]
    ours = [n for n in nodes if _value(n["package"], consts) == pkg]
    assert len(ours) == 1
    node = ours[0]
    exe = _value(node["executable"], consts)
    assert scripts.get(exe) == "depth_ros.node:main"
    import depth_ros.node

    assert callable(depth_ros.node.main)

    # remappings: ("image", ...), ("camera_info", ...) name topics the node subscribes to
    remaps = [_value(t.elts[0], consts) for t in node["remappings"].elts]
    assert set(remaps) == {"image", "camera_info"} and set(remaps) <= INPUTS

    # launch arguments: the required ones are declared, and only declared ones are used
    declared = {_value(c.args[0], consts) for c in calls("DeclareLaunchArgument")}
    assert REQUIRED_ARGS <= declared, REQUIRED_ARGS - declared
    used = {_value(c.args[0], consts) for c in calls("LaunchConfiguration") + calls("arg")
            if c.args and isinstance(_value(c.args[0], consts), str)}
    assert used <= declared, used - declared
    used |= set(consts["PARAM_ARGUMENTS"])  # read in a loop: arg(name) for name in PARAM_ARGUMENTS
    assert used >= REQUIRED_ARGS  # every required argument has an effect

    # arguments forwarded as parameters are parameters of the node
    for name in consts["PARAM_ARGUMENTS"]:
        assert name in P.SPECS and name in declared

    # the parameter file and RViz config exist and are installed
    cfg = REPO / "config" / consts["PARAMS_FILE"]
    assert cfg.is_file() and any(fnmatch.fnmatch(f"config/{cfg.name}", g) for g in globs)
    assert yaml.safe_load(cfg.read_text())["/**"]["ros__parameters"]["model"] == LAUNCH_MODEL[path.name]
    rviz = REPO / "rviz" / consts["RVIZ_FILE"]
    assert rviz.is_file() and any(fnmatch.fnmatch(f"rviz/{rviz.name}", g) for g in globs)


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_executes_with_stand_ins(path):
    nodes = ru.run_launch_file(path, {"image": "/cam/image_raw", "camera_info": "/cam/camera_info",
                                      "namespace": "front", "device": "cpu"})
    depth = [n for n in nodes if n["kwargs"]["package"] == "depth_ros"]
    rviz = [n for n in nodes if n["kwargs"]["package"] == "rviz2"]
    assert len(depth) == 1 and depth[0]["enabled"]
    kw = depth[0]["kwargs"]
    assert kw["executable"] == "depth_node" and kw["namespace"] == "front"
    # the launch file's own parameter file (share/depth_ros/config/<PARAMS_FILE>; share = the repository)
    params_file = _constants(ast.parse(path.read_text()))["PARAMS_FILE"]
    assert Path(kw["parameters"][0]) == ru.REPO / "config" / params_file and Path(kw["parameters"][0]).is_file()
    assert kw["parameters"][1]["device"] == "cpu" and "weights" not in kw["parameters"][1]  # empty: file wins
    assert dict(kw["remappings"]) == {"image": "/cam/image_raw", "camera_info": "/cam/camera_info"}
    assert len(rviz) == 1 and not rviz[0]["enabled"]  # rviz:=false by default
    nodes = ru.run_launch_file(path, {"rviz": "true", "camera_frame": "cam_optical"})
    rviz = [n for n in nodes if n["kwargs"]["package"] == "rviz2"][0]
    assert rviz["enabled"]
    args = rviz["kwargs"]["arguments"]
    assert Path(args[args.index("-d") + 1]).is_file() and args[args.index("-f") + 1] == "cam_optical"
    with pytest.raises(ValueError):
        ru.run_launch_file(path, {"imgae": "/typo"})
    # params_file:= replaces the default file
    kw = [n for n in ru.run_launch_file(path, {"params_file": "/tmp/mine.yaml"})
          if n["kwargs"]["package"] == "depth_ros"][0]["kwargs"]
    assert kw["parameters"][0] == "/tmp/mine.yaml"


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.mark.parametrize("name", sorted(CONFIG_MODEL))
def test_parameter_files_match_the_declared_parameters(name):
    doc = yaml.safe_load((REPO / "config" / name).read_text())
    assert list(doc) == ["/**"]
    values = _flatten(doc["/**"]["ros__parameters"])  # nested maps are dotted names in ROS 2
    for key, value in values.items():
        assert P.is_known(key), f"{name}: unknown parameter {key}"
        spec = P.SPECS.get(key)
        if spec is not None:
            # the YAML type must be the declared type (an int for a double is rejected by rclpy)
            assert type(value) is spec.type, f"{name}: {key}={value!r} is not {spec.type.__name__}"
            assert spec.validate(value) is None, spec.validate(value)
    merged = dict(P.DEFAULTS, **values)
    assert P.validate_all(merged) == []
    assert merged["allow_random_weights"] is False
    assert values["model"] == CONFIG_MODEL[name]


def test_rviz_config_topics_are_node_outputs():
    doc = yaml.safe_load((REPO / "rviz" / "depth_ros.rviz").read_text())
    vm = doc["Visualization Manager"]
    topics = {}
    for d in vm["Displays"]:
        if "Topic" in d:
            topics[d["Topic"]["Value"]] = d["Class"]
            # the node publishes RELIABLE by default: a reliable or best-effort display connects
            assert d["Topic"]["Reliability Policy"] in ("Reliable", "Best Effort")
    assert topics == {"depth/points": "rviz_default_plugins/PointCloud2",
                      "depth/colorized": "rviz_default_plugins/Image",
                      "depth/confidence": "rviz_default_plugins/Image"}
    assert set(topics) <= OUTPUTS
    cloud = [d for d in vm["Displays"] if d["Class"] == "rviz_default_plugins/PointCloud2"][0]
    assert cloud["Color Transformer"] == "RGB8"
    launch_default = ru.run_launch_file(LAUNCH_FILES[0])
    rviz_args = [n for n in launch_default if n["kwargs"]["package"] == "rviz2"][0]["kwargs"]["arguments"]
    assert vm["Global Options"]["Fixed Frame"] == rviz_args[rviz_args.index("-f") + 1]


def test_docs_cover_every_parameter_and_topic():
    doc = (REPO / "README.md").read_text()
    missing = [name for name in P.SPECS if f"`{name}`" not in doc]
    assert not missing, missing
    for topic in INPUTS | OUTPUTS | {"/diagnostics"}:
        assert f"`{topic}`" in doc, topic


def test_readme_parameter_table_is_generated_from_the_specs():
    table = importlib.util.spec_from_file_location("param_table", REPO / "scripts" / "param_table.py")
    mod = importlib.util.module_from_spec(table)
    table.loader.exec_module(mod)
    doc = (REPO / "README.md").read_text()
    assert mod.replace_in(doc) == doc, "README's parameter table is stale: run scripts/param_table.py --write"
