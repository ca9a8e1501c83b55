"""`python3 -m openrlhf_rrl.cli.train_ppo_ray <every OpenRLHF train_ppo_ray flag> --rrl_enable ...`

The one-line change to an OpenRLHF launch script: replace `openrlhf.cli.train_ppo_ray` with
`openrlhf_rrl.cli.train_ppo_ray`. Without --rrl_enable the run is exactly OpenRLHF's.
"""

import sys

from openrlhf_rrl.openrlhf.launch import main

if __name__ == "__main__":
    sys.exit(main())
