#pragma once
// The transfer (downstream) stage: the projection head is dropped and the encoder alone is scored
// on the test split - linear probe and weighted kNN on frozen features, and fine-tuning with 1%,
// 10% and 100% of the labels - beside the baselines that keep the numbers honest (raw pixels, a
// randomly initialised encoder of the same architecture, supervised training from scratch).

#include <nlohmann/json.hpp>
#include <string>

#include "selfsup/core/config.h"
#include "selfsup/dist/communicator.h"
#include "selfsup/models/encoder.h"
#include "selfsup/transfer/features.h"
#include "selfsup/transfer/finetune.h"
#include "selfsup/transfer/probes.h"

namespace selfsup {

/// Runs the transfer stage for `encoder`, writes `<out_dir>/results.json` (and results.png, plus
/// monitor.png when `<out_dir>/../monitor.csv` exists, with gnuplot) and returns the results on
/// rank 0 (an empty object elsewhere). Collective: every rank calls it.
///   1. all ranks: features of both splits, sharded over the ranks and gathered (the pretrained
///      and, with baselines, the random encoder);
///   2. all ranks: fine-tuning per label fraction, data-parallel (pretrained; with baselines also
///      from a random initialisation);
///   3. rank 0 alone, after the last collective: linear probes, kNN, the raw-pixel baselines, the
///      report. The other ranks return at once rather than wait in a collective, where they would
///      trip dist.timeout_s; MPI_Finalize holds them until rank 0 is done.
nlohmann::json run_transfer(const Config& config, Encoder& encoder, const std::string& out_dir,
                            Communicator& comm);

/// The results table of a results.json object, as printed at the end of a run.
std::string format_results_table(const nlohmann::json& results);

/// Draws `<out_dir>/results.png` (top-1 per label fraction) from `results`, and
/// `<out_dir>/monitor.png` from `monitor_csv` when that file exists (columns step, epoch,
/// knn_top1). Warns and returns false when gnuplot is missing or fails.
bool write_results_plots(const nlohmann::json& results, const std::string& out_dir,
                         const std::string& monitor_csv);

}  // namespace selfsup
