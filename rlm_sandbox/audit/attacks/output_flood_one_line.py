import os
import sys

sys.stderr.write('AUDIT {"bytes": 50331648}\n')
sys.stdout.write("y" * (40 << 20))
sys.stdout.flush()
os.write(1, b"z" * (8 << 20))
