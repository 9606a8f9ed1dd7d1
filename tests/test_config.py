from pathlib import Path

import pytest

from mm4watch.core import config
from mm4watch.core.errors import ConfigError
from mm4watch.executors.swarm import SwarmConfig

ROOT = Path("/proj")


def parse(text):
    return config.parse(text, root=ROOT, file=ROOT / "mm4.toml")


def error_of(text):
    with pytest.raises(ConfigError) as err:
        parse(text)
    return str(err.value)


def test_defaults_without_file(tmp_path):
    cfg = config.load(tmp_path)
    assert cfg.file is None and cfg.root == tmp_path.resolve()
    assert cfg.project.notebooks == ("notebooks",)
    assert cfg.run.executor == "local" and cfg.run.timeout_s == 7200
    assert cfg.executor().type == "local"
    assert cfg.results_dir == tmp_path.resolve() / "results"


def test_full_config():
    cfg = parse(
        """
[project]
notebooks = ["notebooks", "reports"]
results = "out"
image = "mm4-demo"

[run]
executor = "mini"
timeout = "1h30m"

[executors.local]
type = "local"

[executors.mini]
type = "docker"
host = "ssh://me@mini.local:2222"
cpus = 8
memory = "16g"

[executors.mini-gpu]
type = "ssh"
host = "me@mini.local"
python = "python3.11"
"""
    )
    assert cfg.project.notebooks == ("notebooks", "reports")
    assert cfg.results_dir == ROOT / "out"
    assert cfg.run.timeout_s == 5400
    mini = cfg.executor()
    assert (mini.name, mini.type, mini.host, mini.cpus, mini.memory) == (
        "mini",
        "docker",
        "ssh://me@mini.local:2222",
        8.0,
        "16g",
    )
    assert cfg.executor("mini-gpu").python == "python3.11"
    assert cfg.image_name == "mm4-demo"


def test_repository_mm4_toml_is_valid():
    repo = Path(__file__).resolve().parents[1]
    cfg = config.load(repo)
    assert cfg.file == repo / "mm4.toml"
    assert cfg.executor().type == "local"


def test_unknown_key_names_key_and_line():
    msg = error_of('[project]\nnotebooks = "nb"\nnotebook_dir = "x"\n')
    assert "mm4.toml:3:" in msg and "project.notebook_dir" in msg and "not a known key" in msg


def test_unknown_table():
    msg = error_of('[run]\nexecutor = "local"\n\n[projekt]\nresults = "r"\n')
    assert "mm4.toml:4:" in msg and "projekt" in msg


def test_wrong_type_names_key_and_line():
    msg = error_of('[run]\nexecutor = "local"\ntimeout = true\n')
    assert "mm4.toml:3:" in msg and "run.timeout" in msg


def test_bad_duration_names_key_and_line():
    msg = error_of('\n\n[run]\ntimeout = "two hours"\n')
    assert "mm4.toml:4:" in msg and "run.timeout" in msg and "not a duration" in msg


def test_invalid_toml_reports_line():
    msg = error_of("[run]\nexecutor = local\n")
    assert "not valid TOML" in msg and "line 2" in msg


def test_executor_without_type():
    msg = error_of('[executors.mini]\nhost = "ssh://me@mini"\n')
    assert "mm4.toml:1:" in msg and "needs a type" in msg


def test_executor_bad_type_and_keys():
    assert 'use "dask", "docker", "local", "native" or "swarm"' in error_of('[executors.x]\ntype = "kubernetes"\n')
    msg = error_of('[executors.mini]\ntype = "docker"\nhost = "ssh://me@mini"\npython = "3"\n')
    assert "mm4.toml:4:" in msg and "executors.mini.python" in msg
    assert "needs host" in error_of('[executors.mini]\ntype = "docker"\n')
    assert "ssh://user@machine" in error_of('[executors.mini]\ntype = "docker"\nhost = "mini.local"\n')
    assert "cpus" in error_of('[executors.mini]\ntype = "docker"\nhost = "ssh://m"\ncpus = -1\n')
    assert "memory" in error_of('[executors.mini]\ntype = "docker"\nhost = "ssh://m"\nmemory = "lots"\n')
    msg = error_of('[executors.mini]\ntype = "docker"\nhost = "ssh://m"\n\nbuilder = "fast"\n')
    assert "mm4.toml:5:" in msg and "executors.mini.builder" in msg and 'use "auto" or "classic"' in msg
    msg = error_of('[executors.mini]\ntype = "swarm"\nhost = "ssh://m"\nregistry = "r:5000"\ndocker_cli = "docker"\n')
    assert "mm4.toml:5:" in msg and "executors.mini.docker_cli" in msg and "absolute path" in msg
    assert "not a size" in error_of('[executors.mini]\ntype = "docker"\nhost = "ssh://m"\nbuild_cache_max = "lots"\n')


def test_each_executor_type_has_its_own_settings_and_ssh_means_native():
    from mm4watch.core.config import parse
    from mm4watch.executors.docker import DockerConfig
    from mm4watch.executors.local import LocalConfig
    from mm4watch.executors.native import NativeConfig

    cfg = parse(
        '[executors.gpu]\ntype = "ssh"\nhost = "me@mini"\npython = "python3.12"\n'
        '[executors.box]\ntype = "docker"\nhost = "ssh://me@mini"\ncpus = 2\n',
        root=ROOT,
    )
    gpu, box, local = cfg.executor("gpu"), cfg.executor("box"), cfg.executor("local")
    assert isinstance(gpu, NativeConfig) and gpu.type == "native" and gpu.python == "python3.12"
    assert isinstance(box, DockerConfig) and box.cpus == 2 and not hasattr(gpu, "cpus")
    assert isinstance(local, LocalConfig)


def test_run_executor_must_exist():
    msg = error_of('[run]\nexecutor = "mini"\n')
    assert "mm4.toml:2:" in msg and "not defined" in msg


def test_paths_must_stay_inside_project():
    assert "inside the project" in error_of('[project]\nresults = "../elsewhere"\n')
    assert "inside the project" in error_of('[project]\nresults = "/abs"\n')


def test_quoted_and_dotted_keys_get_lines():
    msg = error_of('[executors."gpu box"]\ntype = "local"\n')
    assert "mm4.toml:1:" in msg and "not a valid executor name" in msg
    msg = error_of('run.executor = "local"\nrun.colour = "red"\n')
    assert "mm4.toml:2:" in msg and "run.colour" in msg


def test_env_overrides_config_and_tag(monkeypatch):
    cfg = parse('[executors.mini]\ntype = "docker"\nhost = "ssh://m"\n')
    assert cfg.executor(tag="mini").name == "mini"
    monkeypatch.setenv("MM4_EXECUTOR", "local")
    assert cfg.executor(tag="mini").name == "local"
    assert cfg.executor("mini", tag="local").name == "mini"
    monkeypatch.setenv("MM4_EXECUTOR", "nowhere")
    with pytest.raises(ConfigError, match="unknown executor 'nowhere'.*known executors: local, mini"):
        cfg.executor()


def test_root_found_by_walking_up(tmp_path):
    (tmp_path / "mm4.toml").write_text("[run]\n")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    root, file = config.find_root(deep)
    assert root == tmp_path.resolve() and file == tmp_path.resolve() / "mm4.toml"


def test_root_falls_back_to_git_top(tmp_path):
    (tmp_path / ".git").mkdir()
    deep = tmp_path / "x"
    deep.mkdir()
    assert config.find_root(deep) == (tmp_path.resolve(), None)


def test_load_reports_file_errors(tmp_path):
    (tmp_path / "mm4.toml").write_bytes(b"\xff\xfe[run]")
    with pytest.raises(ConfigError, match="cannot read it"):
        config.load(tmp_path)


def test_swarm_executor_keys():
    good = (
        '[executors.pool]\ntype = "swarm"\nhost = "ssh://me@mini1"\nregistry = "mini1.local:5000"\n'
        'constraints = ["node.labels.gpu==mps"]\nnodes = { "mini2" = "ssh://me@10.0.0.12" }\nmemory = "8g"\n'
    )
    pool = parse(good).executors["pool"]
    assert isinstance(pool, SwarmConfig)
    assert pool.registry == "mini1.local:5000" and pool.constraints == ("node.labels.gpu==mps",)
    assert dict(pool.nodes) == {"mini2": "ssh://me@10.0.0.12"} and pool.concurrency == 0  # one per ready node
    assert "mm4.toml:1: executors.pool needs registry = " in error_of(
        '[executors.pool]\ntype = "swarm"\nhost = "ssh://me@mini1"\n'
    )
    assert 'executors.pool needs host = "ssh://user@manager"' in error_of(
        '[executors.pool]\ntype = "swarm"\nhost = "tcp://mini1:2376"\nregistry = "r:5000"\n'
    )
    assert "executors.pool.nodes" in error_of(good.replace('"ssh://me@10.0.0.12"', '"10.0.0.12"'))
    assert "executors.pool.registry" in error_of(good.replace("mini1.local:5000", "http://mini1/"))


def test_which_nodes_can_run_an_image():
    from mm4watch.executors.swarm import _arch_line

    def node(name: str, arch: str) -> dict:
        return {"Description": {"Hostname": name, "Platform": {"Architecture": arch}}}

    line = _arch_line("aarch64", [node("mini1", "aarch64"), node("box", "x86_64"), node("mini2", "aarch64")])
    assert "runs go to mini1, mini2" in line and "not to box (x86_64)" in line
    assert _arch_line("x86_64", [node("mini1", "aarch64")]).startswith(
        "the image is built for x86_64 (the manager's architecture): runs go to none"
    )


def test_nodes_that_are_a_macs_docker_vm_are_named():
    """Docker Desktop, OrbStack and colima nodes (canned `docker node inspect` descriptions)."""
    from mm4watch.executors.swarm_nodes import node_host, vm_node

    def node(node_id: str, name: str, addr: str) -> dict:
        return {"ID": node_id, "Description": {"Hostname": name}, "Status": {"Addr": addr}}

    linux = [node("a1", "mini1", "10.0.0.11"), node("b2", "mini2", "10.0.0.12")]
    assert [vm_node(n, linux) for n in linux] == [None, None]
    desktop = [node("c3", "docker-desktop", "192.168.65.3"), node("d4", "docker-desktop", "192.168.65.3")]
    assert "'docker-desktop' is the one every docker-desktop VM has" in str(vm_node(desktop[0], desktop))
    assert "198.19.0.0/16" in str(vm_node(node("e5", "mac-builder", "198.19.249.2"), []))  # OrbStack
    assert "192.168.5.0/24" in str(vm_node(node("f6", "lima-box", "192.168.5.15"), []))  # colima
    twins = [node("g7", "box", "10.0.0.21"), node("h8", "box", "10.0.0.22")]
    assert "another node has the hostname 'box'" in str(vm_node(twins[0], twins))
    # a node is reached by its ID first (hostnames repeat), then its hostname, then its address
    cfg = SwarmConfig(name="pool", type="swarm", nodes={"h8": "ssh://me@second", "box": "ssh://me@first"})
    assert [node_host(cfg, n) for n in twins] == ["ssh://me@first", "ssh://me@second"]
    assert node_host(cfg, linux[0]) == "ssh://10.0.0.11"


def test_two_projects_of_one_name_never_share_a_remote_name(tmp_path):
    """One key (folder name and a hash of the path) for the Mini's folder, images, the mirror and the service."""
    from mm4watch.commands.service import unit_path
    from mm4watch.remote import mirror

    keys = set()
    for parent in ("work", "home"):
        root = tmp_path / parent / "analysis"
        root.mkdir(parents=True)
        (root / "mm4.toml").write_text("[run]\n")
        cfg = config.load(root)
        assert cfg.project_key.startswith("analysis-") and cfg.image_name == f"mm4-{cfg.project_key}"
        assert mirror.remote_dir(cfg, "mm4watch") == f"mm4watch/{cfg.project_key}/results"
        assert unit_path(cfg, "Darwin")[1] == f"com.mm4watch.{cfg.project_key}"
        keys.add(cfg.project_key)
    assert len(keys) == 2


def test_native_keeps_environments_and_docker_images():
    """One name per meaning: a native executor keeps environments (``keep_images``, its first name,
    still read), docker keeps images; neither takes the other's key."""
    ssh = '[executors.mini]\ntype = "native"\nhost = "ssh://me@mini"\n'
    assert parse(ssh + "keep_environments = 2\n").executors["mini"].keep_environments == 2
    assert parse(ssh + "keep_images = 5\n").executors["mini"].keep_environments == 5
    docker = '[executors.box]\ntype = "docker"\nhost = "ssh://me@mini"\n'
    assert parse(docker + "keep_images = 4\n").executors["box"].keep_images == 4
    msg = error_of(docker + "keep_environments = 4\n")
    assert "mm4.toml:4:" in msg and "executors.box.keep_environments" in msg and "not a known key" in msg


@pytest.mark.parametrize("section", sorted(config.SECTIONS))
def test_every_section_is_declared_once_and_read_by_its_declaration(section):
    """Each [section]'s keys come from its dataclass (``setting``): every declared key reads back,
    and its default is the dataclass's."""
    kind = config.SECTIONS[section]
    defaults = kind()
    for key, (attr, _) in kind.keys().items():
        assert hasattr(defaults, attr), (section, key)
    empty = parse("")
    assert getattr(empty, section) == defaults
    msg = error_of(f"[{section}]\nno_such_key = 1\n")
    assert f"{section}.no_such_key" in msg and ", ".join(sorted(kind.keys())) in msg
