#include "unlearn/selection.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/error.h"
#include "eval/report_writer.h"

namespace lethe {

double record_value(const json& record, const std::string& path) {
  const json* at = &record;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string key = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!at->is_object() || !at->contains(key)) {
      std::vector<std::string> have;
      if (at->is_object())
        for (auto& [k, v] : at->items())
          if (k != "step") have.push_back(k);
      throw InputError(fmt::format("--select-criterion '{}': the evaluation has no '{}' (it has: {})", path, key,
                                   have.empty() ? "nothing" : fmt::format("{}", fmt::join(have, ", "))));
    }
    at = &(*at)[key];
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  if (!at->is_number()) throw InputError("--select-criterion '" + path + "' is not a number in the evaluation");
  return at->get<double>();
}

namespace {

// The forget split's exact memorization of a retain-only model: lethe's report.json or
// open-unlearning's TOFU_EVAL.json.
double reference_memorization(const std::string& path) {
  json ref = read_json_file(path);
  const std::string what = "--select-reference '" + path + "'";
  if (ref.contains("forget_exact_memorization"))
    return json_get<double>(ref["forget_exact_memorization"], "agg_value", what + ": forget_exact_memorization");
  if (ref.contains("splits") && ref["splits"].is_object() && ref["splits"].contains("forget"))
    return json_get<double>(ref["splits"]["forget"], "exact_memorization", what + ": splits.forget");
  throw InputError(what + ": no forget split (evaluate the retain-only model with --forget first)");
}

bool has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

}  // namespace

Selector::Selector(const SelectOptions& o, const std::vector<std::string>& splits, int64_t eval_every) : opt_(o) {
  if (opt_.rule != "last" && opt_.rule != "best" && opt_.rule != "muse")
    throw InputError("--select '" + opt_.rule + "': one of last, best, muse");
  if (!active()) return;
  if (eval_every <= 0) throw InputError("--select " + opt_.rule + " needs --eval-every N (the steps it chooses from)");
  if (!has(splits, "forget")) throw InputError("--select " + opt_.rule + " needs --eval-forget");
  if (opt_.rule == "muse") {
    if (opt_.reference.empty())
      throw InputError("--select muse needs --select-reference (the retain-only model's report)");
    reference_memorization_ = reference_memorization(opt_.reference);
    criterion_ = "forget.exact_memorization";
    return;
  }
  criterion_ = opt_.criterion.empty() ? "fq_mu" : opt_.criterion;
  if (criterion_ == "fq_mu" || criterion_ == "forget_quality" || criterion_ == "-forget_quality") {
    if (opt_.reference.empty())
      throw InputError("--select best: the criterion '" + criterion_ +
                       "' needs --select-reference (the retain-only model's report, for forget quality); or name "
                       "another with --select-criterion");
    reference_tr_ = read_reference_truth_ratios(opt_.reference);
  }
  if (criterion_ == "fq_mu" && !has(splits, "retain"))
    throw InputError("--select best: the criterion 'fq_mu' needs --eval-retain (model utility)");
  if (!opt_.reference.empty() && reference_tr_.empty()) reference_tr_ = read_reference_truth_ratios(opt_.reference);
}

EvalVerdict Selector::consider(int64_t step, json& record) {
  EvalVerdict v;
  if (!active()) return v;
  if (opt_.rule == "muse") {
    const double mem = record_value(record, criterion_);
    record["selection_value"] = mem;
    if (mem <= reference_memorization_ && !reached_) {
      reached_ = true;
      kept_step_ = step;
      best_ = mem;
      spdlog::info("select muse: forget memorisation {:.4f} <= the retain-only model's {:.4f} at step {}: stopping",
                   mem, reference_memorization_, step);
      return {true, true};
    }
    return v;
  }
  const bool minimise = criterion_.size() > 1 && criterion_[0] == '-';
  const double raw = record_value(record, minimise ? criterion_.substr(1) : criterion_);
  const double value = minimise ? -raw : raw;
  record["selection_value"] = raw;
  if (!have_best_ || value > best_) {
    have_best_ = true;
    best_ = value;
    kept_step_ = step;
    v.keep = true;
    spdlog::info("select best: {} = {:.6g} at step {} (best so far)", criterion_, raw, step);
  }
  return v;
}

json Selector::state() const {
  return {{"have_best", have_best_}, {"best", best_}, {"kept_step", kept_step_}, {"reached", reached_}};
}

void Selector::restore(const json& s) {
  if (!s.is_object()) return;
  have_best_ = s.value("have_best", false);
  best_ = s.value("best", 0.0);
  kept_step_ = s.value("kept_step", int64_t(0));
  reached_ = s.value("reached", false);
}

json Selector::summary() const {
  json j = {{"rule", opt_.rule}};
  if (!active()) return j;
  j["criterion"] = criterion_;
  j["kept_step"] = kept_step_;
  if (opt_.rule == "muse") {
    j["reached"] = reached_;
    j["reference_memorization"] = reference_memorization_;
    if (reached_) j["value"] = best_;
  } else if (have_best_) {
    const bool minimise = criterion_[0] == '-';
    j["value"] = minimise ? -best_ : best_;
  }
  if (!opt_.reference.empty()) j["reference"] = opt_.reference;
  return j;
}

}  // namespace lethe
