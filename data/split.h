// Splitting a forget set into named subsets by an attribute (SPUNGE's first stage).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "data/data_options.h"

namespace lethe {

struct SplitOptions {
  std::string by;     // --split-by: the attribute whose values define the subsets
  int64_t block = 0;  // --split-block: instead, consecutive blocks of N records
  std::string map;    // --split-map: VALUE=SUBSET,... or @file.json gathering values into subsets
};
// "" when the options are consistent, else what is wrong (naming the options).
std::string validate(const SplitOptions& o);

// Subsets in name order; every record lands in exactly one. InputError when a record lacks
// the attribute, a map value matches nothing, a name is not a safe file name, or fewer than
// two subsets result.
std::vector<NamedExamples> split_by_attribute(const std::vector<Example>& forget, const SplitOptions& o);

// "value=subset,value=subset" or "@file.json" ({"value": "subset"}) -> map; "" -> {}.
std::map<std::string, std::string> read_split_map(const std::string& spec);

}  // namespace lethe
