# expect: 8:1: Missing closing '}' for the hashtable that starts at 2:1
@{
    Name = 'web1'
    Boot = @{
        KernelPath = '/boot/vmlinuz'
    }
    Disks = @()
