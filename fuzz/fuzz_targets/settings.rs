//! Trainer settings: arbitrary bytes as the JSON of `cg_trainer_new` / `cyclegan train`,
//! through `RunSettings::from_json`, the limit checks, and the configuration a new run would
//! get, which must then validate. Nothing here touches the file system (an `init` file is
//! dropped before the configuration is built). A panic ("capacity overflow"), an abort or an
//! allocation beyond the RSS limit is a bug; errors are expected.

#![no_main]

use cyclegan::train::settings::check_config_limits;
use cyclegan::train::RunSettings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut s) = RunSettings::from_json(text) else {
        return;
    };
    if s.check_limits().is_err() {
        return;
    }
    s.init = None;
    s.content.get_or_insert_with(|| "content".into());
    s.style.get_or_insert_with(|| "style".into());
    if s.epochs.is_none() && s.iterations.is_none() {
        s.iterations = Some(1);
    }
    let Ok(config) = s.new_config() else {
        return;
    };
    // Settings within the limits always give a configuration within them.
    check_config_limits(&config).expect("settings within limits give a config within them");
    let _ = config.validate();
    let _ = config.to_metadata();
});
