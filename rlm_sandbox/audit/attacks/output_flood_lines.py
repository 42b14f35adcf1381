import sys

sys.stderr.write('AUDIT {"lines": 260000}\n')
for i in range(60000):  # one print per line...
    print(i, "x" * 56)
for block in range(200):  # ...and a thousand lines per write, to reach 16 MB quickly under gVisor too
    sys.stdout.write("".join(f"{block} {j} {'y' * 56}\n" for j in range(1000)))
