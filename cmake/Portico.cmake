# Helpers shared by every directory's CMakeLists.txt.

# pt_add_unit_test(NAME SOURCES a.c b.c LIBS lib... [TIMEOUT s])
# Builds test_<NAME> from test/unit/test_<NAME>.c plus SOURCES, links cmocka
# and LIBS, and registers it with ctest under the label "unit".
function(pt_add_unit_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 60)
  endif()
  if(PORTICO_SANITIZE)
    # ASan+UBSan run 3-10x slower; a loaded 2-core machine must not turn that into timeouts.
    math(EXPR T_TIMEOUT "${T_TIMEOUT} * 4")
  endif()
  if(NOT EXISTS ${PORTICO_SOURCE_DIR}/test/unit/test_${name}.c)
    # A registered test whose file is gone would silently stop running: refuse
    # to configure instead (each engineer works in their own worktree).
    message(FATAL_ERROR "unit test ${name}: test/unit/test_${name}.c missing")
  endif()
  add_executable(test_${name} ${PORTICO_SOURCE_DIR}/test/unit/test_${name}.c ${T_SOURCES})
  target_link_libraries(test_${name} PRIVATE ${T_LIBS} PkgConfig::CMOCKA)
  target_include_directories(test_${name} PRIVATE ${PORTICO_SOURCE_DIR}/test/support)
  add_test(NAME unit.${name} COMMAND test_${name})
  set_tests_properties(unit.${name} PROPERTIES LABELS unit TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "CMOCKA_MESSAGE_OUTPUT=stdout")
endfunction()

# pt_add_fuzz_target(NAME SOURCES ... LIBS ...)
# With PORTICO_FUZZ: a libFuzzer binary fuzz_<NAME>. Always: a ctest "fuzz"
# smoke test replaying test/fuzz/corpus/<NAME>/ through a plain-main driver
# (test/fuzz/replay_main.c), so CI exercises every seed without clang.
function(pt_add_fuzz_target name)
  cmake_parse_arguments(F "" "" "SOURCES;LIBS" ${ARGN})
  set(src ${PORTICO_SOURCE_DIR}/test/fuzz/fuzz_${name}.c)
  if(NOT EXISTS ${src})
    message(FATAL_ERROR "fuzz target ${name}: ${src} missing")
  endif()
  if(PORTICO_FUZZ)
    add_executable(fuzz_${name} ${src} ${F_SOURCES})
    target_link_libraries(fuzz_${name} PRIVATE ${F_LIBS})
    target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer)
  else()
    add_executable(replay_${name} ${src} ${PORTICO_SOURCE_DIR}/test/fuzz/replay_main.c ${F_SOURCES})
    target_link_libraries(replay_${name} PRIVATE ${F_LIBS})
    add_test(NAME fuzz.${name}
      COMMAND replay_${name} ${PORTICO_SOURCE_DIR}/test/fuzz/corpus/${name})
    set_tests_properties(fuzz.${name} PROPERTIES LABELS fuzz TIMEOUT 120)
  endif()
endfunction()
