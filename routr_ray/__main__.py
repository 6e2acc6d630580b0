import sys

from routr_ray.cli import main

sys.exit(main())
