// SPUNGE's rank-group sizing: given sizes, equal queued groups, or proportional groups.
#include <gtest/gtest.h>

#include "common/error.h"
#include "dist/process_groups.h"

using namespace lethe;

TEST(Groups, ProportionalOneGroupPerSubset) {
  GroupOptions o;
  EXPECT_EQ(plan_group_sizes({30, 10}, o, 4), (std::vector<int>{3, 1}));
  EXPECT_EQ(plan_group_sizes({1, 1, 1}, o, 3), (std::vector<int>{1, 1, 1}));
  EXPECT_THROW(plan_group_sizes({1, 1, 1}, o, 2), InputError);  // fewer ranks than subsets
}

TEST(Groups, EqualGroupsThatSubsetsQueueOn) {
  GroupOptions o;
  o.groups = 2;
  EXPECT_EQ(plan_group_sizes({5, 5, 5}, o, 4), (std::vector<int>{2, 2}));
  EXPECT_THROW(plan_group_sizes({5, 5, 5}, o, 3), InputError);  // 2 does not divide 3
}

TEST(Groups, GivenSizes) {
  GroupOptions o;
  o.sizes = parse_group_sizes("3,1");
  EXPECT_EQ(plan_group_sizes({1, 1}, o, 4), (std::vector<int>{3, 1}));
  o.sizes = {1, 1, 1};
  EXPECT_THROW(plan_group_sizes({1, 1}, o, 3), InputError);  // more groups than subsets
  EXPECT_THROW(parse_group_sizes("2,x"), InputError);
  EXPECT_THROW(parse_group_sizes("0"), InputError);
}
