#include <unistd.h>

#include <cstring>
#include <sstream>

#include "selfsup/dist/communicator.h"

namespace selfsup {
namespace {

constexpr int64_t kFieldBytes = 64;  // host name and device, each NUL-padded to this size

void put(torch::Tensor& row, int64_t offset, const std::string& text) {
  const auto n = std::min<int64_t>(static_cast<int64_t>(text.size()), kFieldBytes - 1);
  std::memcpy(row.data_ptr<uint8_t>() + offset, text.data(), static_cast<size_t>(n));
}

std::string get(const torch::Tensor& row, int64_t offset) {
  return std::string(reinterpret_cast<const char*>(row.data_ptr<uint8_t>() + offset));
}

}  // namespace

std::string rank_table(Communicator& comm, const std::string& device) {
  char host[kFieldBytes] = {0};
  ::gethostname(host, kFieldBytes - 1);
  // One fixed-size row per rank: [host | device | local rank as text], gathered in rank order.
  auto row = torch::zeros({1, 3 * kFieldBytes}, torch::kByte);
  put(row, 0, host);
  put(row, kFieldBytes, device);
  put(row, 2 * kFieldBytes, std::to_string(comm.local_rank()));
  const auto rows = comm.all_gather(row);  // [world, 3 * kFieldBytes]
  std::ostringstream out;
  out << "rank  host                      local rank  device";
  for (int r = 0; r < comm.size(); ++r) {
    const auto line = rows[r].contiguous();
    std::string name = get(line, 0);
    name.resize(std::max<size_t>(name.size(), 24), ' ');
    std::string local = get(line, 2 * kFieldBytes);
    local.resize(std::max<size_t>(local.size(), 10), ' ');
    out << "\n"
        << (r < 10    ? "   "
            : r < 100 ? "  "
                      : " ")
        << r << "  " << name << "  " << local << "  " << get(line, kFieldBytes);
  }
  return out.str();
}

}  // namespace selfsup
