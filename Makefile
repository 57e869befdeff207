# corral: the two commands are `make` (build) and `make test`.
# Everything goes through meson; these targets only sequence it.

BUILD ?= build
ASAN_BUILD ?= build-asan
PREFIX ?= /usr/local
# Simulator seeds run by `make test` (fixed set + fresh random batch) and
# by `make sim` (a longer campaign: make sim SEEDS=100000).
TEST_SEEDS ?= 1000
ASAN_SEEDS ?= 200
SEEDS ?= 20000
# Fuzzing (scripts/fuzz.sh): seconds per target for `make fuzz`, and for
# the smoke run in `make test` (all targets at once; the replay driver
# when clang has no libFuzzer).
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 10

.PHONY: all deps build run test unit cluster purity layers sim-test asan bench sim fmt fmt-check \
	install clean fuzz fuzz-smoke

all: build

deps:
	@scripts/deps.sh

$(BUILD)/build.ninja:
	@scripts/deps.sh
	meson setup $(BUILD) --buildtype=debugoptimized

$(ASAN_BUILD)/build.ninja:
	@scripts/deps.sh
	meson setup $(ASAN_BUILD) --buildtype=debug -Db_sanitize=address,undefined \
		-Db_lundef=false

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

# Build, then run a single-node coordinator with the defaults (Ctrl-C stops it).
run: build
	$(BUILD)/src/cli/corral server run

test: build fmt-check purity layers unit cluster sim-test asan fuzz-smoke
	@echo "make test: all passed"

purity:
	@scripts/check-core-purity.sh

# No include from a lower layer of src/ to a higher one (util < core <
# runtime < api < cli).
layers:
	@scripts/check-layers.sh

unit: build
	meson test -C $(BUILD) --suite unit --print-errorlogs

# Real 3-node clusters of corral processes on loopback (tests/cluster).
cluster: build
	meson test -C $(BUILD) --suite cluster --print-errorlogs

sim-test: build
	scripts/sim-test.sh $(BUILD) $(TEST_SEEDS)

asan: deps $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		meson test -C $(ASAN_BUILD) --suite unit --suite cluster --print-errorlogs
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		scripts/sim-test.sh $(ASAN_BUILD) $(ASAN_SEEDS) no-broken

# The fuzz targets of tests/fuzz under libFuzzer with ASan/UBSan, in
# build-fuzz/, each for FUZZ_SECONDS over its committed seed corpus.
fuzz:
	scripts/fuzz.sh run $(FUZZ_SECONDS)

fuzz-smoke:
	scripts/fuzz.sh smoke $(FUZZ_SMOKE_SECONDS)

sim: build
	$(BUILD)/tests/sim/corral-sim --seeds $(SEEDS) --random

bench: build
	scripts/bench.sh $(BUILD)

fmt:
	clang-format -i $$(git ls-files '*.c' '*.h')

# Fails listing the files `make fmt` would change; changes nothing.
fmt-check:
	@scripts/check-fmt.sh

install: build
	meson install -C $(BUILD) --destdir "$(DESTDIR)"

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz build-fuzz-replay
