# The CUDA half of gradflow_core, included by core/CMakeLists.txt when GRADFLOW_WITH_CUDA is on
# (cmake/cuda.cmake found nvcc, the toolkit and cuDNN). Adds the device layer (tensor/cuda/), the kernels
# (ops/cuda/) and links cudart, cuBLAS and cuDNN privately: no public gradflow header needs CUDA headers.
file(GLOB GRADFLOW_CUDA_SOURCES CONFIGURE_DEPENDS
  ${CMAKE_CURRENT_SOURCE_DIR}/tensor/cuda/*.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/tensor/cuda/*.cu
  ${CMAKE_CURRENT_SOURCE_DIR}/ops/cuda/*.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/ops/cuda/*.cu)
target_sources(gradflow_core PRIVATE ${GRADFLOW_CUDA_SOURCES})

if(NOT CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES 90)
endif()
set_target_properties(gradflow_core PROPERTIES
  CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}"
  POSITION_INDEPENDENT_CODE ON)
target_link_libraries(gradflow_core PRIVATE CUDA::cudart CUDA::cublas CUDA::cublasLt gradflow_cudnn)
