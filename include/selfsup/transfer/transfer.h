#pragma once
// The transfer (downstream) stage: the projection head is dropped, features come from the frozen
// encoder on un-augmented images, and the linear probe and kNN score them on the test split, beside
// the baselines that keep the number honest (raw pixels, a randomly initialised encoder).

#include <nlohmann/json.hpp>
#include <string>

#include "selfsup/core/config.h"
#include "selfsup/data/dataset.h"
#include "selfsup/dist/communicator.h"
#include "selfsup/models/encoder.h"
#include "selfsup/transfer/probes.h"

namespace selfsup {

/// Encoder features of every sample of `dataset`, un-augmented and normalised like training views.
FeatureSet extract_features(Encoder& encoder, const Dataset& dataset, const AugmentConfig& augment,
                            int64_t batch_size);

/// Raw normalised pixels of every sample, flattened: [N, C*H*W].
FeatureSet pixel_features(const Dataset& dataset, const AugmentConfig& augment);

/// Runs the transfer stage for `encoder`, writes `<out_dir>/results.json` and returns it. Rank 0
/// does the work (no collective); the other ranks return an empty object at once.
nlohmann::json run_transfer(const Config& config, Encoder& encoder, const std::string& out_dir,
                            Communicator& comm);

/// Prints the results table of a results.json object.
std::string format_results_table(const nlohmann::json& results);

}  // namespace selfsup
