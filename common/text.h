// Small text helpers shared by the data readers and the option parsers.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace lethe {

// "a,b,c" -> {"a", "b", "c"} ("" -> {}).
std::vector<std::string> split_commas(const std::string& s);
// "5GB", "500MB", "64KB", "1000000" (SI units) -> bytes; InputError naming `what` otherwise.
uint64_t parse_byte_size(const std::string& s, const std::string& what);

}  // namespace lethe
