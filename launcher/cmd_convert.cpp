// `lethe convert`: an HF directory <-> a native checkpoint (optionally cast).
#include <spdlog/spdlog.h>

#include "checkpoints/model_io.h"
#include "common/fs.h"
#include "launcher/command.h"
#include "launcher/option_groups.h"

namespace lethe {

namespace {

struct ConvertFlags {
  ModelLoadOptions in;
  OutputOptions out;
};

void declare(OptionSet& o, ConvertFlags& f, const RuntimeOptions&) {
  bind_model(o, f.in, "in", /*with_adapter=*/false);
  bind_output(o, f.out, "to");
}

int run(const ConvertFlags& f, const Runtime&, const json& cfg) {
  if (is_complete_dir(f.out.out) && read_run_config(f.out.out) == cfg) {  // rerun after a kill
    spdlog::info("convert: {} already holds this conversion; nothing to do", f.out.out);
    return 0;
  }
  CausalLM model = load_model(f.in.dir, f.in.dtype);
  save_model(model, f.out.out, f.out.format, cfg, f.in.dir, f.out.max_shard_bytes);
  spdlog::info("convert: {} -> {} ({})", f.in.dir, f.out.out, format_name(f.out.format));
  return 0;
}

}  // namespace

Command convert_command() {
  return make_command<ConvertFlags>("convert", "convert between an HF directory and a native checkpoint", false, false,
                                    declare, run);
}

}  // namespace lethe
