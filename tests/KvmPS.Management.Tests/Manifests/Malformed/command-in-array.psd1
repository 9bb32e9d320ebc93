# expect: 6:9: Commands are not allowed in a data file: 'Get-ChildItem'
@{
    Name = 'web1'
    Disks = @(
        'a.qcow2'
        Get-ChildItem *.qcow2
    )
}
