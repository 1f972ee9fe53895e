# Thin wrapper over scripts/ and CMake. The two commands of the README:
#   make demo   installs what is missing, builds, starts the example services and Portico
#   make test   installs what is missing, builds, runs every test (plain and ASan+UBSan builds)
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps build build-asan test test-fast test-asan demo bench fuzz lint clean install

all: build

deps:
	@$(SUDO) bash scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

build-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DPORTICO_SANITIZE=ON >/dev/null
	cmake --build $(ASAN_BUILD) -j$(JOBS)

# Every test, first on the optimised build, then under the sanitizers.
test: build build-asan
	bash scripts/test-env.sh
	cd $(BUILD) && ctest --output-on-failure --timeout 300 -j$(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure --timeout 600 -j$(JOBS)

test-fast: build
	bash scripts/test-env.sh
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

demo: build
	bash scripts/demo.sh $(BUILD)

bench: build
	bash bench/run.sh $(BUILD)

fuzz: deps
	CC=clang CXX=clang++ cmake -S . -B build-fuzz -DPORTICO_FUZZ=ON >/dev/null
	cmake --build build-fuzz -j$(JOBS)
	bash scripts/fuzz.sh build-fuzz

lint: build
	bash scripts/lint.sh $(BUILD)

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz
