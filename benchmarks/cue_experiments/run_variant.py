"""Session-4 cue experiments (benchmarks/RESULTS_cpu.md): train one trainer variant of cue_trainers.py on a
lodo_benchmark.py dataset and score it on cue_vs_style.py's factor sets.

Usage: CUE_WORK=/tmp/cue CUE_FACTORS=<folder with A_cue_broken/, D_cue_intact/, ...> CUE_BENCH=<lodo seed folder>
       python run_variant.py DATASET_ID TRAINER [synth args for a new dataset]
(EXTRA=1 also scores the benchmark's in-domain / siteD / siteU sets.) Results are appended to
$CUE_WORK/results.txt. Run as in the session: datasets 970 (lodo seed 0) and 801 (the same sites without
the cue: `-n 30 --domains siteA siteB siteC --size 64 64 --seed 0`).
"""
import json, os, subprocess, sys, shutil
from pathlib import Path
HERE = Path(__file__).resolve().parent
R = Path(os.environ.get('CUE_WORK', '/tmp/cue_work'))
FACTORS = os.environ.get('CUE_FACTORS', str(R / 'factors'))
BENCH = os.environ.get('CUE_BENCH', str(R / 'bench'))
env = dict(os.environ, nnUNet_raw=str(R/'raw'), nnUNet_preprocessed=str(R/'pre'), nnUNet_results=str(R/'res'),
           HF_HUB_OFFLINE='1', nnUNet_compile='false', nnUNet_n_proc_DA='2', OMP_NUM_THREADS='2',
           nnUNet_extTrainer=f'{HERE.parent.parent}/nnunet_causal/ext:{HERE}/trainers')
B = str(Path(sys.executable).parent) + '/'
did, tr = sys.argv[1], sys.argv[2]
synth = sys.argv[3:]
def run(cmd, log):
    with open(log, 'a') as f:
        r = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode: sys.exit(f'failed: {cmd} (see {log})')
raws = list((R/'raw').glob(f'Dataset{did}_*'))
if not raws:
    run([B+'nnunet_causal', 'synth', 'endoscopy2d', '-d', did, *synth], R/f'prep{did}.log')
    raws = list((R/'raw').glob(f'Dataset{did}_*'))
raw = raws[0]; pre = R/'pre'/raw.name
if not (pre/'splits_final.json').exists():
    run([B+'nnUNetv2_plan_and_preprocess', '-d', did, '-c', '2d', '-np', '2', '-npfp', '2'], R/f'prep{did}.log')
    plans = json.loads((pre/'nnUNetPlans.json').read_text()); plans['plans_name'] = 'nnUNetPlans_CPU16'
    a = plans['configurations']['2d']['architecture']['arch_kwargs']; a['features_per_stage'] = [max(8, f//2) for f in a['features_per_stage']]
    (pre/'nnUNetPlans_CPU16.json').write_text(json.dumps(plans, indent=1))
    dj = json.loads((raw/'dataset.json').read_text())
    train = sorted(c for c, r in dj['domains'].items() if r['split'] == 'train')
    (pre/'splits_final.json').write_text(json.dumps([{'train': train, 'val': train[:6]}], indent=1))
model = R/'res'/raw.name/f'{tr}__nnUNetPlans_CPU16__2d'
if not (model/'fold_0'/'checkpoint_final.pth').exists():
    run([B+'nnUNetv2_train', did, '2d', '0', '-tr', tr, '-p', 'nnUNetPlans_CPU16', '-device', 'cpu'], R/f'{tr}_{did}.log')
from nnunet_causal.evaluation.evaluate_folder import evaluate_folders
out = []
sets = sys.argv[3:] if False else ['A_cue_broken', 'D_cue_intact', 'D_no_nbi_cue_broken']
SETS = {s: f'{FACTORS}/{s}' for s in ['A_cue_broken', 'D_cue_intact', 'D_no_nbi_cue_broken']}
if os.environ.get('EXTRA'):
    SETS.update({s: f'{BENCH}/eval/{s}' for s in ['in-domain', 'siteD', 'siteU']})
for s, folder in SETS.items():
    pred = R/'pred'/f'{tr}_{did}'/s
    if not (pred/'evaluation.json').exists():
        run([B+'nnUNetv2_predict', '-i', f'{folder}/images', '-o', str(pred), '-d', did, '-c', '2d', '-p', 'nnUNetPlans_CPU16',
             '-f', '0', '-tr', tr, '-device', 'cpu', '-npp', '1', '-nps', '1', '--disable_progress_bar'], R/f'pred{did}.log')
        evaluate_folders(f'{folder}/labels', pred, raw/'dataset.json', num_processes=1)
    out.append(f"{s}={json.loads((pred/'evaluation.json').read_text())['summary']['mean']['dice']:.3f}")
line = f'{tr} D{did} {" ".join(synth)} :: ' + ' '.join(out)
print(line); open(R/'results.txt', 'a').write(line + '\n')
