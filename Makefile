# Thin wrapper over CMake: each target installs missing Debian packages, builds, runs.
BUILD ?= build
JOBS ?= 2

.PHONY: all deps build demo test test-asan bench clean

all: build

deps:
	@tools/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

demo: build
	$(BUILD)/jbx recipes/quickstart.lua

test: build
	cd $(BUILD) && ctest --output-on-failure --timeout 600

# The same suite under AddressSanitizer and UBSan, in its own build folder.
test-asan: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DJBX_SANITIZE=ON >/dev/null
	@cmake --build build-asan -j$(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=0 ctest --output-on-failure --timeout 1200

bench: build
	$(BUILD)/jbx bench/bench.lua $(BENCH)

clean:
	rm -rf $(BUILD) build-asan
