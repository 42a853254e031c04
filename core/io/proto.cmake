# Included by core/CMakeLists.txt: compiles core/io/proto/*.proto with protoc into the build tree
# (<build>/core/io/proto/*.pb.{h,cc}) and adds the generated code to gradflow_core. Protos import each other
# by their path from the repository root ("core/io/proto/feature.proto").
find_package(Protobuf REQUIRED)
if(NOT TARGET protobuf::protoc)
  message(FATAL_ERROR "protoc was not found (apt-get install protobuf-compiler; scripts/setup does)")
endif()
file(GLOB GRADFLOW_IO_PROTOS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/io/proto/*.proto)
set(GRADFLOW_IO_PROTO_SOURCES)
foreach(proto ${GRADFLOW_IO_PROTOS})
  get_filename_component(stem ${proto} NAME_WE)
  set(out ${PROJECT_BINARY_DIR}/core/io/proto/${stem})
  add_custom_command(
    OUTPUT ${out}.pb.cc ${out}.pb.h
    COMMAND protobuf::protoc --proto_path=${PROJECT_SOURCE_DIR} --cpp_out=${PROJECT_BINARY_DIR} ${proto}
    DEPENDS ${proto} protobuf::protoc
    COMMENT "protoc ${stem}.proto"
    VERBATIM)
  list(APPEND GRADFLOW_IO_PROTO_SOURCES ${out}.pb.cc ${out}.pb.h)
endforeach()
target_sources(gradflow_core PRIVATE ${GRADFLOW_IO_PROTO_SOURCES})
# Generated headers are private to core/io: public headers never include them.
target_include_directories(gradflow_core PRIVATE ${PROJECT_BINARY_DIR})
