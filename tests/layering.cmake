# The layering guard (ctest `layering`): each layer's target compiles with only its own and lower
# layers' include roots, so an include of a higher layer's header must fail, and the planning
# library must not reach sockets or threads.
#   cmake -DCXX=... -DCORE_FLAGS=... -DPLAN_FLAGS=... -DRUNTIME_FLAGS=... -DNM=... -DPLAN_LIB=...
#         -DSRC=... -DWORK=... -P layering.cmake
# *_FLAGS: the target's include directories and definitions, joined with '|'.
file(MAKE_DIRECTORY ${WORK})
set(failures "")

# try(layer header expect): compiles `#include "header"` with the layer's flags.
function(try layer header expect)
  string(REPLACE "|" ";" flags "${${layer}_FLAGS}")
  list(REMOVE_ITEM flags "-I" "-D")
  string(MAKE_C_IDENTIFIER "${layer}_${header}" id)
  file(WRITE ${WORK}/${id}.cpp "#include \"${header}\"\nint main() { return 0; }\n")
  execute_process(COMMAND ${CXX} -std=c++17 -fsyntax-only ${flags} ${WORK}/${id}.cpp
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(expect STREQUAL "ok" AND NOT rc EQUAL 0)
    set(failures "${failures}\n${layer} cannot include ${header} (it should):\n${out}" PARENT_SCOPE)
  elseif(expect STREQUAL "missing")
    string(FIND "${out}" "${header}" named)
    if(rc EQUAL 0 OR named EQUAL -1 OR NOT out MATCHES "No such file|not found")
      set(failures "${failures}\n${layer} must not see ${header}, but it compiled or failed otherwise:\n${out}" PARENT_SCOPE)
    else()
      message(STATUS "ok: ${layer} cannot include ${header}")
    endif()
  else()
    message(STATUS "ok: ${layer} includes ${header}")
  endif()
endfunction()

try(CORE "core/graph.h" ok)
try(CORE "dist/plan/planner.h" missing)
try(CORE "dist/testbed/dilation.h" missing)
try(PLAN "dist/plan/planner.h" ok)
try(PLAN "dist/runtime/protocol.h" missing)
try(PLAN "dist/runtime/tcp.h" missing)
try(PLAN "dist/testbed/cluster.h" missing)
try(RUNTIME "dist/runtime/host.h" ok)
try(RUNTIME "dist/testbed/dilation.h" missing)
try(RUNTIME "dist/testbed/cluster.h" missing)

# Planning is pure: no socket, thread or asio header in its sources...
file(GLOB plan_sources ${SRC}/dist/plan/*.h ${SRC}/dist/plan/*.cpp)
foreach(f ${plan_sources})
  file(STRINGS ${f} bad REGEX "#include <(asio|thread|mutex|condition_variable|future|sys/socket\\.h|netinet/|poll\\.h|pthread\\.h)")
  if(bad)
    set(failures "${failures}\n${f}: ${bad}")
  endif()
endforeach()
# ...and no socket or thread call in its library.
execute_process(COMMAND ${NM} -u ${PLAN_LIB} OUTPUT_VARIABLE undefined RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  set(failures "${failures}\nnm failed on ${PLAN_LIB}")
endif()
foreach(sym pthread_create socket connect accept asio)
  string(REGEX MATCH "[ _]${sym}[^\n]*" hit "${undefined}")
  if(hit)
    set(failures "${failures}\n${PLAN_LIB} references ${hit}")
  endif()
endforeach()

if(failures)
  message(FATAL_ERROR "layering violated:${failures}")
endif()
message(STATUS "layering holds")
