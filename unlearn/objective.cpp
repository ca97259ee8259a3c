#include "unlearn/objective.h"

#include "common/error.h"

namespace lethe {

ObjectiveSpec declared_objective(const std::string& name,
                                 std::function<std::unique_ptr<Objective>(const MethodOptions&)> build) {
  MethodDeclaration d = method_declaration(name);
  return {d.name, d.summary, d.options, std::move(build)};
}

const std::vector<ObjectiveSpec>& objective_registry() {
  static const std::vector<ObjectiveSpec> specs = {
      ga_objective_spec(),          gd_objective_spec(),     kl_objective_spec(),     random_label_objective_spec(),
      adversarial_objective_spec(), npo_objective_spec(),    simnpo_objective_spec(), dpo_objective_spec(),
      idk_objective_spec(),         rmu_objective_spec(),    tvn_objective_spec(),    memflex_objective_spec(),
      snap_objective_spec(),        undial_objective_spec(), wga_objective_spec(),    satimp_objective_spec(),
      ce_u_objective_spec(),        pdu_objective_spec(),    altpo_objective_spec()};
  return specs;
}

const ObjectiveSpec& find_objective(const std::string& name) {
  std::string known;
  for (auto& s : objective_registry()) {
    if (s.name == name) return s;
    known += (known.empty() ? "" : ", ") + s.name;
  }
  throw InputError("--method: unknown unlearning method '" + name + "' (" + known + ")");
}

torch::Tensor mean_item_nll(CausalLM& model, const Batch& b) {
  return item_mean_nll(model->answer_loss(b.input_ids, b.attention_mask, b.labels)).mean();
}

}  // namespace lethe
