// SPUNGE's first stage: the forget set split by an attribute, a block size or a value map.
#include <gtest/gtest.h>

#include "common/error.h"
#include "data/split.h"
#include "tests/test_util.h"

using namespace lethe;

namespace {
std::vector<Example> records(const std::vector<std::string>& domains) {
  std::vector<Example> out;
  for (size_t i = 0; i < domains.size(); ++i)
    out.push_back({"q" + std::to_string(i), "a" + std::to_string(i), json{{"domain", domains[i]}}});
  return out;
}
}  // namespace

TEST(Split, ByAttributeInNameOrderKeepingRecordOrder) {
  SplitOptions o;
  o.by = "domain";
  auto subsets = split_by_attribute(records({"privacy", "copyright", "privacy", "copyright", "privacy"}), o);
  ASSERT_EQ(subsets.size(), 2u);
  EXPECT_EQ(subsets[0].name, "copyright");
  EXPECT_EQ(subsets[1].name, "privacy");
  ASSERT_EQ(subsets[1].examples.size(), 3u);
  EXPECT_EQ(subsets[1].examples[0].prompt, "q0");
  EXPECT_EQ(subsets[1].examples[2].prompt, "q4");
}

TEST(Split, ByBlocksOfRecords) {
  SplitOptions o;
  o.block = 2;
  auto subsets = split_by_attribute(records({"a", "a", "a", "a", "a"}), o);
  ASSERT_EQ(subsets.size(), 3u);  // blocks 0, 1, 2
  EXPECT_EQ(subsets[2].examples.size(), 1u);
}

TEST(Split, MapGathersValuesAndNamesSubsets) {
  SplitOptions o;
  o.by = "domain";
  o.map = "x=left,y=left";
  auto subsets = split_by_attribute(records({"x", "y", "z"}), o);
  ASSERT_EQ(subsets.size(), 2u);
  EXPECT_EQ(subsets[0].name, "left");
  EXPECT_EQ(subsets[0].examples.size(), 2u);
  EXPECT_EQ(subsets[1].name, "z");
  EXPECT_EQ(read_split_map("a=b,c=d").at("c"), "d");
  EXPECT_THROW(read_split_map("a=b,c"), InputError);
}

TEST(Split, RefusesWhatCannotBeSplit) {
  SplitOptions o;
  EXPECT_NE(validate(o), "");  // neither --split-by nor --split-block
  o.by = "domain";
  o.block = 3;
  EXPECT_NE(validate(o), "");  // both
  o.block = 0;
  EXPECT_EQ(validate(o), "");
  EXPECT_THROW(split_by_attribute(records({"a", "a"}), o), InputError);    // one subset
  EXPECT_THROW(split_by_attribute(records({"a", "b c"}), o), InputError);  // unsafe name
  auto missing = records({"a", "b"});
  missing[1].attrs = json::object();
  EXPECT_THROW(split_by_attribute(missing, o), InputError);  // no attribute
  o.map = "nothing=n";
  EXPECT_THROW(split_by_attribute(records({"a", "b"}), o), InputError);  // map value unused
}
