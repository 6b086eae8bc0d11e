#include "selfsup/core/config.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "selfsup/core/error.h"

namespace selfsup {
namespace {

using nlohmann::json;

std::string join(const std::vector<std::string>& items, const char* sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

std::string number(double x) {
  std::ostringstream out;
  out << x;
  return out.str();
}

// Walks a JSON object with a struct's `visit` list: reads every listed key that is present (absent
// keys keep their defaults), checks its type and range, and remembers which keys were used so that
// the rest can be reported as unknown.
class JsonReader {
 public:
  JsonReader(const json& node, std::string path, std::string source)
      : node_(node), path_(std::move(path)), source_(std::move(source)) {
    if (!node_.is_object()) fail(path_.empty() ? "<root>" : path_, node_, "a JSON object");
  }

  template <typename Struct>
  void read(Struct& s) {
    s.visit(*this);
    for (const auto& item : node_.items()) {
      if (!seen_.count(item.key())) {
        const std::string key = key_path(item.key());
        throw ConfigError(source_ + ": unknown key '" + key + "' (value " + item.value().dump() +
                          "); known keys here: " + join(known_, ", ") + ". Check the spelling.");
      }
    }
  }

  void operator()(const char* key, std::string& value) {
    if (const json* v = find(key)) {
      if (!v->is_string()) fail(key_path(key), *v, "a string");
      value = v->get<std::string>();
    }
  }
  void operator()(const char* key, std::string& value, const std::vector<std::string>& choices) {
    if (const json* v = find(key)) {
      const std::string expected = "one of \"" + join(choices, "\", \"") + "\"";
      if (!v->is_string()) fail(key_path(key), *v, expected);
      const auto s = v->get<std::string>();
      bool ok = false;
      for (const auto& c : choices) ok = ok || c == s;
      if (!ok) fail(key_path(key), *v, expected);
      value = s;
    }
  }
  void operator()(const char* key, bool& value) {
    if (const json* v = find(key)) {
      if (!v->is_boolean()) fail(key_path(key), *v, "true or false");
      value = v->get<bool>();
    }
  }
  void operator()(const char* key, uint64_t& value) {
    if (const json* v = find(key)) {
      if (!v->is_number_unsigned()) fail(key_path(key), *v, "a non-negative integer");
      value = v->get<uint64_t>();
    }
  }
  template <typename Int, typename = std::enable_if_t<std::is_integral_v<Int>>>
  void operator()(const char* key, Int& value, int64_t lo, int64_t hi) {
    if (const json* v = find(key)) {
      const std::string expected =
          range_text("an integer", double(lo), double(hi), hi == INT64_MAX);
      if (!v->is_number_integer()) fail(key_path(key), *v, expected);
      const auto x = v->get<int64_t>();
      if (x < lo || x > hi) fail(key_path(key), *v, expected);
      value = static_cast<Int>(x);
    }
  }
  void operator()(const char* key, double& value, double lo, double hi) {
    if (const json* v = find(key)) {
      const std::string expected = range_text("a number", lo, hi, false);
      if (!v->is_number()) fail(key_path(key), *v, expected);
      const auto x = v->get<double>();
      if (!(x >= lo && x <= hi)) fail(key_path(key), *v, expected);
      value = x;
    }
  }
  void operator()(const char* key, std::vector<double>& value, double lo, double hi,
                  bool ordered_pair) {
    if (const json* v = find(key)) {
      const std::string expected = (ordered_pair ? "a pair [low, high] with low <= high, each in "
                                                 : "a list of numbers in ") +
                                   std::string("[") + number(lo) + ", " + number(hi) + "]";
      if (!v->is_array() || (ordered_pair && v->size() != 2)) fail(key_path(key), *v, expected);
      std::vector<double> xs;
      for (const auto& e : *v) {
        if (!e.is_number()) fail(key_path(key), *v, expected);
        const auto x = e.get<double>();
        if (!(x >= lo && x <= hi)) fail(key_path(key), *v, expected);
        xs.push_back(x);
      }
      if (ordered_pair && xs[0] > xs[1]) fail(key_path(key), *v, expected);
      value = xs;
    }
  }
  template <typename Struct,
            typename = decltype(std::declval<Struct&>().visit(std::declval<JsonReader&>()))>
  void operator()(const char* key, Struct& value) {
    if (const json* v = find(key)) JsonReader(*v, key_path(key), source_).read(value);
  }

 private:
  const json* find(const char* key) {
    seen_.insert(key);
    known_.push_back(key);
    auto it = node_.find(key);
    return it == node_.end() ? nullptr : &*it;
  }
  std::string key_path(const std::string& key) const {
    return path_.empty() ? key : path_ + "." + key;
  }
  static std::string range_text(const char* what, double lo, double hi, bool open_top) {
    return std::string(what) +
           (open_top ? " >= " + number(lo) : " in [" + number(lo) + ", " + number(hi) + "]");
  }
  [[noreturn]] void fail(const std::string& key, const json& value, const std::string& expected) {
    throw ConfigError(source_ + ": " + key + " = " + value.dump() + " is invalid: expected " +
                      expected + ".");
  }

  const json& node_;
  std::string path_;
  std::string source_;
  std::set<std::string> seen_;
  std::vector<std::string> known_;
};

// Serialises a struct's `visit` list into JSON (the resolved config).
class JsonWriter {
 public:
  explicit JsonWriter(json& node) : node_(node) { node_ = json::object(); }
  template <typename T, typename... Rest>
  void operator()(const char* key, T& value, Rest&&...) {
    if constexpr (HasVisit<T>::value) {
      json child;
      JsonWriter writer(child);
      value.visit(writer);
      node_[key] = child;
    } else {
      node_[key] = value;
    }
  }

 private:
  template <typename T, typename = void>
  struct HasVisit : std::false_type {};
  template <typename T>
  struct HasVisit<T, std::void_t<decltype(std::declval<T&>().visit(std::declval<JsonWriter&>()))>>
      : std::true_type {};
  json& node_;
};

// Applies one `key.path=value` override to the raw JSON, before validation.
void apply_override(json& root, const std::string& text, const std::string& source) {
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw ConfigError("--set " + text + ": expected key.path=value, e.g. --set optim.lr=0.01");
  }
  const std::string path = text.substr(0, eq);
  const std::string raw = text.substr(eq + 1);
  json value = json::parse(raw, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) value = raw;  // not JSON: take it as a string

  json* node = &root;
  std::string walked;
  std::stringstream parts(path);
  std::string part;
  std::vector<std::string> keys;
  while (std::getline(parts, part, '.')) {
    if (part.empty())
      throw ConfigError("--set " + text + ": empty component in key path '" + path + "'");
    keys.push_back(part);
  }
  for (size_t i = 0; i + 1 < keys.size(); ++i) {
    walked += (i ? "." : "") + keys[i];
    json& child = (*node)[keys[i]];
    if (child.is_null()) child = json::object();
    if (!child.is_object()) {
      throw ConfigError("--set " + text + ": '" + walked + "' in " + source +
                        " is not an object, so it has no key '" + keys[i + 1] + "'");
    }
    node = &child;
  }
  (*node)[keys.back()] = value;
}

}  // namespace

Config parse_config(const std::string& json_text, const std::string& source,
                    const std::vector<std::string>& overrides) {
  json root = json::parse(json_text, nullptr, /*allow_exceptions=*/false, /*ignore_comments=*/true);
  if (root.is_discarded()) {
    // Parse again with exceptions to get the position of the syntax error.
    try {
      root = json::parse(json_text, nullptr, true, true);
    } catch (const json::parse_error& e) {
      throw ConfigError(source + " is not valid JSON (" + e.what() + "); fix the syntax");
    }
  }
  for (const auto& o : overrides) apply_override(root, o, source);
  Config config;
  JsonReader(root, "", overrides.empty() ? source : source + " (with --set overrides)")
      .read(config);
  check_config(config, overrides.empty() ? source : source + " (with --set overrides)");
  return config;
}

std::string resolved_precision(const Config& config) {
  const auto& precision = config.train.precision;
  if (precision == "auto")
    return config.device == "cuda" && config.pretext.task == "simclr" ? "bf16" : "fp32";
  return precision;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream in(path);
  if (!in) {
    throw ConfigError("cannot read config file '" + path +
                      "': no such file or not readable; see configs/ for ready configs");
  }
  std::stringstream text;
  text << in.rdbuf();
  return parse_config(text.str(), path, overrides);
}

// Rules that tie several keys together (each key's own range is checked by its visit()).
void check_config(const Config& config, const std::string& source) {
  const auto& negatives = config.negatives;
  const int64_t per_step = config.train.batch_size * config.augment.total_views();
  const bool uses_queue = negatives.source != "batch";
  auto fail = [&](const std::string& message) { throw ConfigError(source + ": " + message); };
  if (uses_queue && negatives.queue_size == 0) {
    fail("negatives.source = \"" + negatives.source +
         "\" needs a queue: set negatives.queue_size to a multiple of train.batch_size x "
         "views per image (augment.views + augment.local_views) = " +
         std::to_string(per_step) + " (e.g. " + std::to_string(16 * per_step) + ")");
  }
  if (!uses_queue && negatives.queue_size > 0) {
    fail("negatives.queue_size = " + std::to_string(negatives.queue_size) +
         " is unused with negatives.source = \"batch\"; set negatives.source to \"batch+queue\" "
         "or \"queue\", or negatives.queue_size to 0");
  }
  if (negatives.queue_size % per_step != 0) {
    const int64_t lower = negatives.queue_size / per_step * per_step;
    const std::string examples =
        lower > 0 ? std::to_string(lower) + " or " + std::to_string(lower + per_step)
                  : std::to_string(per_step);
    fail("negatives.queue_size = " + std::to_string(negatives.queue_size) +
         " must be a multiple of the keys enqueued per step, train.batch_size x views per image "
         "(augment.views + augment.local_views) = " +
         std::to_string(config.train.batch_size) + " x " +
         std::to_string(config.augment.total_views()) + " = " + std::to_string(per_step) +
         " (e.g. " + examples + ")");
  }
  const int64_t accumulate = config.train.accumulate_steps;
  const bool own_updates =
      config.pretext.task == "gan" ||
      (config.pretext.task == "inpainting" && config.pretext.inpainting.adversarial_weight > 0.0);
  if (accumulate > 1 && own_updates) {
    // These objectives step a second network (the generator, the in-painting discriminator) at the
    // end of each step from that step's batch; with several batches per step it would learn from
    // the last one only, and the two networks' alternation would change with K.
    fail("train.accumulate_steps = " + std::to_string(accumulate) + " with pretext.task = \"" +
         config.pretext.task + "\"" +
         (config.pretext.task == "gan" ? std::string()
                                       : " and pretext.inpainting.adversarial_weight > 0") +
         ": the alternating updates of two networks do not accumulate; set "
         "train.accumulate_steps to 1 (raise train.batch_size, or add ranks, for a larger batch)");
  }
  const auto& optim = config.optim;
  if (optim.name == "lars" && optim.trust_coefficient == 0.0) {
    fail(
        "optim.trust_coefficient = 0 with optim.name = \"lars\" would make every adapted "
        "layer's step zero (the step is lr x trust_coefficient x |w| / |g|); use 0.001 (the LARS "
        "paper's and SimCLR's value), or optim.name = \"sgd\" for steps without trust ratios");
  }
  const auto& precision = config.train.precision;
  if (precision == "bf16" && config.device != "cuda") {
    fail(
        "train.precision = \"bf16\" needs device = \"cuda\" (bfloat16 autocast is a GPU "
        "speed-up; on this CPU it would only lose precision); set train.precision to \"auto\" "
        "(bf16 on CUDA, fp32 on CPU) or \"fp32\", or --set device=cuda on a GPU machine");
  }
  if (precision == "bf16" && config.pretext.task != "simclr") {
    fail("train.precision = \"bf16\" is implemented for pretext.task = \"simclr\" only; \"" +
         config.pretext.task + "\" trains in fp32: set train.precision to \"fp32\" or \"auto\"");
  }
  const auto& augment = config.augment;
  for (const auto& [key, values] : {std::pair{"mean", &augment.mean}, {"std", &augment.std}}) {
    if (values->size() != 1 && values->size() != 3) {
      fail(std::string("augment.") + key + " has " + std::to_string(values->size()) +
           " values; give one value for every channel, or one value for all of them");
    }
  }
  if (augment.size > 0 && augment.local_size > augment.size) {
    fail("augment.local_size = " + std::to_string(augment.local_size) +
         " is larger than the global views' augment.size = " + std::to_string(augment.size) +
         "; local views are the small crops");
  }
  const auto& pretext = config.pretext;
  if (pretext.task == "simclr") {
    if (augment.total_views() < 2) {
      fail(
          "pretext.task = \"simclr\" needs at least two views per image (positives): set "
          "augment.views to 2 or more");
    }
  } else {
    if (augment.views != 1 || augment.local_views != 0) {
      fail("pretext.task = \"" + pretext.task +
           "\" takes one view per image: set augment.views "
           "to 1 and augment.local_views to 0 (they are " +
           std::to_string(augment.views) + " and " + std::to_string(augment.local_views) + ")");
    }
    if (negatives.source != "batch" || negatives.momentum > 0.0) {
      fail(
          "negatives (a queue or a momentum encoder) belong to the contrastive task; with "
          "pretext.task = \"" +
          pretext.task +
          "\" set negatives.source to \"batch\", "
          "negatives.queue_size to 0 and negatives.momentum to 0");
    }
  }
  if (pretext.task == "diffusion" && !(pretext.diffusion.beta_start < pretext.diffusion.beta_end)) {
    fail("pretext.diffusion.beta_start = " + number(pretext.diffusion.beta_start) +
         " must be below pretext.diffusion.beta_end = " + number(pretext.diffusion.beta_end) +
         " (the noise grows with t)");
  }
  int64_t channels = 0;  // known from the config for these datasets
  if (config.data.dataset == "idx") channels = 1;
  if (config.data.dataset == "cifar10" || config.data.dataset == "cifar100") channels = 3;
  if (config.data.dataset == "synthetic") channels = config.data.synthetic.channels;
  int64_t side = augment.size;
  if (side == 0 && config.data.dataset == "synthetic") side = config.data.synthetic.image_size;
  if (side == 0 && (config.data.dataset == "cifar10" || config.data.dataset == "cifar100"))
    side = 32;
  check_pretext_fit(config, channels, side, source);

  const auto& finetune = config.transfer.finetune;
  if (finetune.enabled && finetune.fractions.empty()) {
    fail(
        "transfer.finetune.fractions is empty; list label fractions in (0, 1], e.g. [0.01, 0.1, "
        "1.0], or set transfer.finetune.enabled to false");
  }
  for (const double fraction : finetune.fractions) {
    if (!(fraction > 0.0)) {
      fail("transfer.finetune.fractions holds " + number(fraction) +
           "; every fraction of labels must be in (0, 1]");
    }
  }
}

JigsawGeometry jigsaw_geometry(const JigsawConfig& jigsaw, int64_t side) {
  JigsawGeometry g;
  g.cell = side / 3;
  g.tile = int64_t(std::floor(double(g.cell) * (1.0 - jigsaw.gap)));
  return g;
}

void check_pretext_fit(const Config& config, int64_t channels, int64_t side,
                       const std::string& source) {
  const auto& pretext = config.pretext;
  auto fail = [&](const std::string& message) { throw ConfigError(source + ": " + message); };
  if (pretext.task == "colorization" && channels == 1) {
    fail("pretext.task = \"colorization\" predicts colour from luminance, but " + config.data.name +
         " (data.dataset = \"" + config.data.dataset +
         "\") is grayscale: use an RGB dataset (cifar10, a folder of colour images, or "
         "data.dataset = \"synthetic\" with data.synthetic.channels = 3), or another task");
  }
  if (side <= 0) return;
  const std::string view = "the views are " + std::to_string(side) + " px (augment.size" +
                           (config.augment.size == 0 ? " = 0: the images' side)" : ")");
  if (pretext.task == "jigsaw") {
    const auto g = jigsaw_geometry(pretext.jigsaw, side);
    if (g.tile < kMinJigsawTile) {
      int64_t needed = 3;
      while (jigsaw_geometry(pretext.jigsaw, needed).tile < kMinJigsawTile) ++needed;
      fail("pretext.task = \"jigsaw\" cuts each view into 3x3 cells of " + std::to_string(g.cell) +
           " px and tiles of " + std::to_string(g.tile) +
           " px (pretext.jigsaw.gap = " + number(pretext.jigsaw.gap) +
           "), but tiles need at "
           "least " +
           std::to_string(kMinJigsawTile) + " px; " + view + ": set augment.size to " +
           std::to_string(needed) + " or more, or lower pretext.jigsaw.gap");
    }
  }
  if (pretext.task == "superres") {
    const int factor = pretext.superres.factor;
    if (factor != 2 && factor != 4) {
      fail("pretext.superres.factor = " + std::to_string(factor) + " is not supported: use 2 or 4");
    }
    if (side % factor != 0 || side / factor < 2) {
      const int64_t up = (side + factor - 1) / factor * factor;
      fail("pretext.superres.factor = " + std::to_string(factor) +
           " must divide the side of the "
           "views into at least 2 px, but " +
           view + ": set augment.size to a multiple of " + std::to_string(factor) + " (e.g. " +
           std::to_string(std::max<int64_t>(up, 2 * factor)) + ") or change the factor");
    }
  }
  if (pretext.task == "inpainting") {
    const auto hole = int64_t(std::lround(pretext.inpainting.size * double(side)));
    if (hole < 1 || hole >= side) {
      fail("pretext.inpainting.size = " + number(pretext.inpainting.size) + " masks " +
           std::to_string(hole) + " px of " + std::to_string(side) + "; " + view +
           ": choose a size that leaves both a hole and some context");
    }
  }
}

std::string config_to_json(const Config& config) {
  json root;
  JsonWriter writer(root);
  Config copy = config;  // visit() is shared with the reader, so it takes a mutable struct
  copy.visit(writer);
  return root.dump(2);
}

}  // namespace selfsup
