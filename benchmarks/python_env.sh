# Sourced by the benchmark shell scripts (from the repository root): the interpreter they run
# (PYTHON if set, else the project's .venv, else python3) as $PY, the project on the import path,
# and the Hugging Face hub offline (every input is on disk; nothing is downloaded).
if [[ -n "${PYTHON:-}" ]]; then PY=$PYTHON
elif [[ -x .venv/bin/python ]]; then PY=.venv/bin/python
else PY=python3
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
