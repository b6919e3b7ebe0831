import subprocess

import tfrobust
from tfrobust import version


def _git(repo, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


def test_code_version_names_the_commit_and_uncommitted_changes(tmp_path):
    assert version.code_version.__wrapped__(str(tmp_path)) == tfrobust.__version__  # not a git checkout
    repo = tmp_path / "repo"
    package = repo / "pkg"
    package.mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "c")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True,
                            text=True).stdout.strip()
    assert version.code_version.__wrapped__(str(package)) == f"{tfrobust.__version__}+g{commit}"
    (package / "a.py").write_text("x = 2\n")
    assert version.code_version.__wrapped__(str(package)) == f"{tfrobust.__version__}+g{commit}.dirty"
    # Changes outside the package (results, docs) do not make the code dirty.
    _git(repo, "checkout", "-q", "--", ".")
    (repo / "notes.md").write_text("results\n")
    assert version.code_version.__wrapped__(str(package)) == f"{tfrobust.__version__}+g{commit}"
