// The MPI implementation of the Communicator seam (the only header besides mpi_env.h that
// names MPI types).
#pragma once
#include <mpi.h>

#include "dist/communicator.h"

namespace lethe {

// MPI on CPU tensors over `comm`; takes ownership of comm unless it is MPI_COMM_WORLD.
std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm, const std::string& name);

}  // namespace lethe
